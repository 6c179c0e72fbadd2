"""The upload gate's multipart reader: real bodies as httpx and curl encode them, in any chunking."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess

import httpx
import pytest
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartParser

from service.multipart import MultipartError, PartTooLarge, TooManyParts, read_parts

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3  # binary, with CR and LF bytes inside


def _encoded(files=None, data=None) -> tuple[str, bytes]:
    request = httpx.Request("POST", "http://x/classify", files=files, data=data)
    return request.headers["content-type"], request.read()


def _read(content_type: str, body: bytes, chunk: int = 1 << 16, max_parts: int = 64, max_part_bytes: int = 10**6):
    async def stream():
        for i in range(0, len(body), chunk):
            yield body[i : i + chunk]

    return asyncio.run(read_parts(content_type, stream(), max_parts=max_parts, max_part_bytes=max_part_bytes))


def _starlette(content_type: str, body: bytes) -> list[tuple[str, str | None, bytes]]:
    async def parse():
        async def stream():
            yield body

        form = await MultiPartParser(Headers({"content-type": content_type}), stream()).parse()
        items = []
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                items.append((name, value.filename, await value.read()))
            else:
                items.append((name, None, value.encode()))
        return items

    return asyncio.run(parse())


FILES = [
    ("images", ("a.png", PNG, "image/png")),
    ("images", ("b c.png", PNG[::-1], "image/png")),
    ("images", ("ünïcode.png", b"", "image/png")),  # an empty file is still a part
    ("images", ('quote".png', b"--not-a-boundary\r\n", "image/png")),
]


@pytest.mark.parametrize("chunk", [1, 7, 100, 1 << 16])
def test_parts_come_out_as_starlette_reads_them_whatever_the_chunking(chunk):
    content_type, body = _encoded(files=FILES, data={"note": "hello"})
    parts = _read(content_type, body, chunk=chunk)
    assert [(p.name, p.filename, p.data) for p in parts] == _starlette(content_type, body)
    # httpx writes a quote in a filename as %22, as browsers do (WHATWG); the name is kept as sent.
    assert [p.filename for p in parts if p.name == "images"] == ["a.png", "b c.png", "ünïcode.png", "quote%22.png"]


def _what_curl_sends(args: list[str]) -> tuple[str, bytes]:
    """Content-Type and body of the request `curl ARGS` makes, caught by a one-shot HTTP server."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        curl = subprocess.Popen(
            ["curl", "-s", "-o", "/dev/null", *args, f"http://127.0.0.1:{server.getsockname()[1]}/"]
        )
        connection, _ = server.accept()
        with connection:
            raw = b""
            while b"\r\n\r\n" not in raw:
                raw += connection.recv(65536)
            head, _, body = raw.partition(b"\r\n\r\n")
            headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
            while len(body) < int(headers["Content-Length"]):
                body += connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        curl.wait(timeout=30)
    return headers["Content-Type"], body


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_a_body_curl_sends_is_read(tmp_path):
    image = tmp_path / "sneaker.png"
    image.write_bytes(PNG)
    content_type, body = _what_curl_sends(["-F", f"images=@{image}", "-F", f"images=@{image}", "-F", "note=hi"])
    parts = _read(content_type, body, chunk=10)
    assert [(p.name, p.filename, p.data) for p in parts] == [
        ("images", "sneaker.png", PNG), ("images", "sneaker.png", PNG), ("note", None, b"hi"),
    ]  # fmt: skip


def test_a_text_field_has_no_filename():
    content_type, body = _encoded(files=[("images", ("a.png", PNG))], data={"images": "http://example.com/x.png"})
    parts = _read(content_type, body)
    assert [(p.filename, p.data) for p in parts] == [(None, b"http://example.com/x.png"), ("a.png", PNG)]


def test_more_parts_than_allowed_is_refused():
    content_type, body = _encoded(files=[("images", (f"{i}.png", PNG)) for i in range(5)])
    assert len(_read(content_type, body, max_parts=5)) == 5
    with pytest.raises(TooManyParts):
        _read(content_type, body, max_parts=4)


def test_a_part_over_the_limit_is_refused_while_it_streams_in():
    big = b"x" * 50_000
    content_type, body = _encoded(files=[("images", ("small.png", PNG)), ("images", ("big.png", big))])
    received = []

    async def stream():
        for i in range(0, len(body), 1000):
            received.append(i)
            yield body[i : i + 1000]

    with pytest.raises(PartTooLarge) as caught:
        asyncio.run(read_parts(content_type, stream(), max_parts=8, max_part_bytes=10_000))
    assert caught.value.part.filename == "big.png"
    assert len(received) * 1000 < 20_000  # stopped long before the 50 kB part had arrived
    assert len(_read(content_type, body, max_part_bytes=50_000)) == 2  # exactly at the limit is fine


BOUNDARY_X = "multipart/form-data; boundary=x"


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("multipart/form-data", b"--x\r\n\r\n", "no valid boundary"),
        (BOUNDARY_X, b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\nab', "ended before"),
        (BOUNDARY_X, b"--x\r\nContent-Type: image/png\r\n\r\nab\r\n--x--", "no Content-Disposition"),
        (BOUNDARY_X, b"--xjunk", "not followed by a line break"),
        (BOUNDARY_X, b"no boundary at all", "ended before"),
        (BOUNDARY_X, b"--x\r\n" + b"X-Long: " + b"a" * 20_000, "headers are longer"),
    ],
    ids=["no-boundary", "no-closing-boundary", "no-disposition", "junk-after-boundary", "no-parts", "endless-headers"],
)
def test_a_malformed_body_is_a_clear_error(content_type, body, message):
    with pytest.raises(MultipartError, match=message):
        _read(content_type, body)


def test_the_body_after_the_closing_boundary_is_read_and_ignored():
    content_type, body = _encoded(files=[("images", ("a.png", PNG))])
    chunks_read = []

    async def stream():
        for chunk in (body, b"epilogue\r\n", b"more"):
            chunks_read.append(chunk)
            yield chunk

    parts = asyncio.run(read_parts(content_type, stream(), max_parts=8, max_part_bytes=10**6))
    assert [p.data for p in parts] == [PNG]
    assert len(chunks_read) == 3

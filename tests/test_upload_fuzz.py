"""Fuzzing the upload path: generated request bodies against the real upload gate and decoder.

Hypothesis builds multipart requests — broken boundaries, missing or wrong
headers, huge, negative and false Content-Lengths, many tiny parts, nested
multipart, random bytes after valid image headers, truncations of every format
we accept, decompression bombs — and sends them, split into random chunks, to
the middleware stack the service runs (connection cap, body deadline, upload
gate with its decoder, for /classify and /wardrobe/items) in-process; a handful also go over raw sockets to the
real `bentoml serve`. Every answer must be a 2xx or a 4xx with a JSON error,
within seconds, and no request may take more than a bounded amount of memory.

CI runs a few hundred examples. `python -m benchmarks.fuzz --examples N` runs
this same test longer and records how many cases ran, by status
(WARDROBE_FUZZ_EXAMPLES and WARDROBE_FUZZ_REPORT below).
"""

from __future__ import annotations

import io
import json
import os
import resource
import select
import socket
import struct
import zlib
from collections import Counter
from pathlib import Path

import anyio
import numpy as np
import psutil
import pytest
from conftest import SHARED_SETTINGS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from service.admission import BodyDeadline, Busy, ConnectionCap
from service.decode_budget import DecodeBudget
from service.settings import Settings
from service.uploads import UploadError, UploadLimits, read_upload
from service.wardrobe import make_thumbnail

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = int(os.environ.get("WARDROBE_FUZZ_EXAMPLES", "300"))
REPORT = os.environ.get("WARDROBE_FUZZ_REPORT")
LIMITS = {"max_files": 8, "max_file_bytes": 200_000, "max_request_bytes": 1_000_000, "max_pixels": 10_000}
PEAK_GROWTH_LIMIT = 64 * 1024 * 1024
"""Most memory one request may take: below one decoded bomb (100 MB and more)."""
STATUSES: Counter[str] = Counter()
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the broken files we send


def _image(mode: str, fmt: str, size=(28, 28), **save) -> bytes:
    rng = np.random.default_rng(len(mode) + len(fmt))
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65535, size[::-1], dtype=np.uint16))
    else:
        channels = {"L": 1, "P": 1, "RGB": 3, "RGBA": 4, "CMYK": 4}[mode]
        pixels = rng.integers(0, 256, (*size[::-1], channels), dtype=np.uint8).squeeze()
        image = Image.fromarray(pixels, "L" if channels == 1 else mode)
        image = image.convert(mode) if mode == "P" else image
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


# One valid file per accepted format (and the modes docs/contract.md promises).
VALID = [
    _image("L", "PNG"), _image("RGBA", "PNG", (40, 30)), _image("P", "PNG"), _image("I;16", "PNG"),
    _image("RGB", "JPEG"), _image("L", "JPEG", (33, 21)), _image("CMYK", "JPEG"),
    _image("RGB", "WEBP"), _image("RGBA", "WEBP", lossless=True), _image("RGB", "BMP"), _image("P", "GIF"),
    _image("RGB", "TIFF"), _image("L", "TIFF", compression="tiff_deflate"),
]  # fmt: skip


def _png_bomb(width: int, height: int, channels: int) -> bytes:
    """A PNG of one colour whose header claims width × height: built row by row, so making it
    costs no memory (a decoded bomb would raise this process's peak by 100+ MB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor, row, idat = zlib.compressobj(9), b"\0" * (1 + width * channels), []
    idat += [compressor.compress(row) for _ in range(height)]
    idat.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, {1: 0, 3: 2}[channels], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(idat)) + chunk(b"IEND", b"")


BOMBS = [_png_bomb(10_000, 10_000, 1), _png_bomb(6_000, 6_000, 3)]


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)] or [b""]


@st.composite
def payloads(draw, depth: int = 0) -> bytes:
    """A file's bytes: valid, truncated, with junk after a valid header, random, a bomb, or multipart."""
    valid = draw(st.sampled_from(VALID))
    kinds = ["valid", "truncated", "tail", "header+random", "random", "flipped", "empty", "bomb"]
    kind = draw(st.sampled_from(kinds + (["nested"] if depth < 2 else [])))
    if kind == "valid":
        return valid
    if kind == "truncated":
        return valid[: draw(st.integers(0, len(valid) - 1))]
    if kind == "tail":
        return valid + draw(st.binary(min_size=1, max_size=300))
    if kind == "header+random":
        return valid[: draw(st.integers(1, 64))] + draw(st.binary(max_size=400))
    if kind == "random":
        return draw(st.binary(max_size=600))
    if kind == "flipped":
        data = bytearray(valid)
        for position in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8)):
            data[position] ^= draw(st.integers(1, 255))
        return bytes(data)
    if kind == "empty":
        return b""
    if kind == "bomb":
        return draw(st.sampled_from(BOMBS))
    boundary, body = draw(multipart(depth + 1))
    return f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n".encode() + body


BOUNDARY_CHARS = st.characters(codec="ascii", categories=["L", "N"], include_characters="'()+_,-./:=? ")


@st.composite
def parts(draw, depth: int = 0) -> bytes:
    name = draw(st.sampled_from(["images", "images", "images", "image", "", 'x"y', "images\r\nX: 1"]))
    filename = draw(st.one_of(st.none(), st.sampled_from(["a.png", "", "../../etc/passwd"]), st.text(max_size=20)))
    disposition = f'form-data; name="{name}"' + ("" if filename is None else f'; filename="{filename}"')
    headers = []
    if draw(st.booleans()) or depth:  # sometimes no Content-Disposition at all
        headers.append(f"Content-Disposition: {disposition}")
    if draw(st.booleans()):
        headers.append(f"Content-Type: {draw(st.sampled_from(['image/png', 'text/plain', '', 'multipart/mixed']))}")
    head = "\r\n".join(headers).encode("utf-8", "surrogatepass")
    return head + b"\r\n\r\n" + draw(payloads(depth))


@st.composite
def multipart(draw, depth: int = 0) -> tuple[str, bytes]:
    """(boundary, body): parts framed by a boundary, often correctly, sometimes not at all."""
    boundary = draw(st.text(BOUNDARY_CHARS, min_size=1, max_size=70)).strip() or "b"
    if draw(st.integers(0, 9)) == 0:  # many tiny parts
        items = [b'Content-Disposition: form-data; name="images"; filename="t"\r\n\r\n' + draw(st.binary(max_size=3))
                 ] * draw(st.integers(9, 200))  # fmt: skip
    else:
        items = draw(st.lists(parts(depth), max_size=4))
    delimiter = f"--{boundary}".encode()
    body = b"".join(delimiter + b"\r\n" + item + b"\r\n" for item in items) + delimiter + b"--\r\n"
    mutation = draw(st.sampled_from(["none", "none", "none", "no-close", "lf-only", "garbage", "cut", "preamble"]))
    if mutation == "no-close":
        body = body[: -len(delimiter) - 4]
    elif mutation == "lf-only":
        body = body.replace(b"\r\n", b"\n")
    elif mutation == "garbage":
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.binary(min_size=1, max_size=50)) + body[at:]
    elif mutation == "cut":
        body = body[: draw(st.integers(0, len(body)))]
    elif mutation == "preamble":
        body = draw(st.binary(max_size=40)) + b"\r\n" + body
    return boundary, body


PATHS = ["/classify", "/wardrobe/items"]


@st.composite
def requests(draw) -> tuple[str, list[tuple[bytes, bytes]], list[bytes]]:
    """(path, headers, body chunks) of one POST to an upload path."""
    boundary, body = draw(multipart())
    content_type = draw(st.sampled_from([
        f"multipart/form-data; boundary={boundary}", f"multipart/form-data; boundary={boundary}",
        f'multipart/form-data; boundary="{boundary}"', f"multipart/form-data; boundary={boundary}x",
        "multipart/form-data", "multipart/form-data; boundary=", "multipart/mixed; boundary=" + boundary,
        "image/png", None,
    ]))  # fmt: skip
    length = draw(st.sampled_from([str(len(body))] * 3 + [None, "9" * 30, "-1", "abc", "0", str(len(body) // 2)]))
    headers = [(b"host", b"127.0.0.1")]  # a name of this machine: the real server answers any other 403
    if content_type is not None:
        headers.append((b"content-type", content_type.encode()))
    if length is not None:
        headers.append((b"content-length", length.encode()))
    return draw(st.sampled_from(PATHS)), headers, _chunks(body, draw(st.lists(st.integers(0, len(body)), max_size=6)))


def _answer_shape(limits: UploadLimits, thumbnail=None):
    """Stands in for a model endpoint: reads the upload as the real ones do, answers its batch's shape."""

    async def endpoint(request):
        try:
            upload = await read_upload(request, limits, thumbnail)
        except (UploadError, Busy) as refusal:
            return refusal.response()
        return JSONResponse({"shape": list(upload.images.shape)})

    return endpoint


def _app():
    """The service's stack: cap, deadline, and both upload endpoints (the wardrobe's makes thumbnails)."""
    limits = UploadLimits(decodes=DecodeBudget.from_settings(Settings()), **LIMITS)
    routes = [Route("/classify", _answer_shape(limits), methods=["POST"]),
              Route("/wardrobe/items", _answer_shape(limits, make_thumbnail), methods=["POST"])]  # fmt: skip
    return ConnectionCap(BodyDeadline(Starlette(routes=routes), idle_s=5, min_rate=0), limit=64)


APP = _app()


async def _call(app, path: str, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[int, bytes]:
    """One request through an ASGI app, as uvicorn would deliver it; (status, response body)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "headers": headers, "client": ("127.0.0.1", 1), "server": ("fuzz", 80)}  # fmt: skip
    pending = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    done = anyio.Event()
    status, body = 0, b""

    async def receive():
        if pending:
            return pending.pop(0)
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        nonlocal status, body
        if message["type"] == "http.response.start":
            status = message["status"]
        else:
            body += message.get("body", b"")
            if not message.get("more_body", False):
                done.set()

    await app(scope, receive, send)
    return status, body


def _check(status: int, body: bytes) -> None:
    STATUSES[str(status)] += 1
    assert 200 <= status < 500, (status, body[:300])
    answer = json.loads(body)
    if status >= 400:
        assert isinstance(answer["error"], str) and answer["error"], body
    else:
        assert status == 200 and answer["shape"][1:] == [1, 28, 28], body


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _rss() -> int:
    return psutil.Process().memory_info().rss


SPIKES = [0]
"""For each request that raised the process's peak memory: how far above its RSS at the start."""


def _measured(call):
    """Run `call()`, recording how much memory it took beyond what the process held before it.
    (Hypothesis's own memory grows with the examples it has made, so whole-run growth would
    measure Hypothesis, not the gate.)"""
    rss, peak = _rss(), _peak_rss()
    result = call()
    if (after := _peak_rss()) > peak:
        SPIKES.append(after - rss)
    return result


@pytest.fixture(scope="module", autouse=True)
def report():
    """No request takes more than PEAK_GROWTH_LIMIT; with WARDROBE_FUZZ_REPORT, write the tally."""
    yield
    largest = max(SPIKES)
    if REPORT:
        tally = {"cases": sum(STATUSES.values()), "statuses": dict(STATUSES),
                 "largest_request_memory_mib": round(largest / 2**20, 1)}  # fmt: skip
        Path(REPORT).write_text(json.dumps(tally, indent=2))
    assert largest < PEAK_GROWTH_LIMIT, f"one request took {largest / 2**20:.0f} MiB"


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(requests())
def test_any_upload_gets_a_2xx_or_a_4xx_with_an_error_in_seconds(request):
    path, headers, chunks = request

    async def run():
        with anyio.fail_after(10):  # a hang fails the test instead of stalling it
            return await _call(APP, path, headers, chunks)

    _check(*_measured(lambda: anyio.run(run)))


def test_every_accepted_format_whole_is_a_200_and_its_truncations_mostly_a_400():
    for data in VALID:
        statuses = {}
        for cut in sorted({len(data), *range(0, len(data), max(1, len(data) // 40))}):
            body = (b'--b\r\nContent-Disposition: form-data; name="images"; filename="f"\r\n\r\n'
                    + data[:cut] + b"\r\n--b--\r\n")  # fmt: skip
            headers = [(b"content-type", b"multipart/form-data; boundary=b")]
            statuses[cut] = anyio.run(_call, APP, "/classify", headers, [body])
            _check(*statuses[cut])
        assert statuses.pop(len(data))[0] == 200
        # A cut may lose only optional trailing data (a TIFF's last tags, a JPEG's end marker).
        refused = sum(status == 400 for status, _ in statuses.values())
        assert refused >= 0.75 * len(statuses), (data[:8], refused, len(statuses))


# ---- a few of the same cases over raw sockets, against the real server -----------------------


@pytest.fixture(scope="module")
def server(shared_server) -> int:
    """The session's server (tests/conftest.py), whose limits are LIMITS."""
    assert {f"WARDROBE_{k.upper()}": str(v) for k, v in LIMITS.items()}.items() <= SHARED_SETTINGS.items()
    return shared_server.port


def _over_socket(port: int, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[int, bytes]:
    head = f"POST {path} HTTP/1.1\r\n".encode() + b"".join(k + b": " + v + b"\r\n" for k, v in headers)
    with socket.create_connection(("127.0.0.1", port), timeout=15) as connection:
        # No half-close after the body: uvicorn takes EOF for a disconnect and drops the answer.
        # A Content-Length longer than the body is the body deadline's to end (408).
        connection.sendall(head + b"Connection: close\r\n\r\n" + body)
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 "), f"no answer before the connection closed: {data[:200]!r}"
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


@pytest.mark.slow
@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])  # fmt: skip
@given(requests())
def test_the_real_server_answers_fuzzed_uploads_with_2xx_or_4xx(server, request):
    path, headers, chunks = request
    status, body = _over_socket(server, path, headers, b"".join(chunks))
    assert 200 <= status < 500, (status, body[:300])
    if status >= 400 and body.startswith(b"{"):  # uvicorn's own 400s for bad framing are plain text
        assert json.loads(body)["error"]


# ---- early answers reach a client that is still sending ----------------------------------------

BODY = b"".join(
    b'--b\r\nContent-Disposition: form-data; name="images"; filename="' + name + b'"\r\n\r\n' + data + b"\r\n"
    for name, data in [(b"a.png", VALID[0]), (b"b.png", VALID[1]), (b"bomb.png", BOMBS[0])]
) + b"--b--\r\n"  # fmt: skip
"""The fuzz failure that started it: a valid upload whose third part is a 10,000 × 10,000 PNG."""
HUGE_PART = b'--b\r\nContent-Disposition: form-data; name="images"; filename="huge.png"\r\n\r\n' + b"\0" * 600_000
EARLY_ANSWERS = {
    # case: (Content-Length header, what is sent before the answer is due, what is still sent after it)
    "a declared length over the limit": (f"{3 * len(HUGE_PART)}", b"", HUGE_PART * 3),
    "a part over the per-file limit": (f"{len(HUGE_PART)}", HUGE_PART[:300_000], HUGE_PART[300_000:]),
    "a length shorter than the body": (f"{len(BODY) // 2}", BODY[: len(BODY) // 2], BODY[len(BODY) // 2 :] * 4),
    "no length at all": (None, b"", BODY * 4),
    "a length that is not a number": ("-1", b"", BODY * 4),
}


def _readable(connection: socket.socket, timeout_s: float) -> bool:
    ready, _, _ = select.select([connection], [], [], timeout_s)
    return bool(ready)


@pytest.mark.parametrize("case", EARLY_ANSWERS)
def test_an_early_answer_reaches_a_client_still_sending_its_body(server, case):
    """The server answers before the body has all arrived; the client, still sending, gets that 4xx:
    the connection drains what it sends, then closes without a reset (service/lingering.py)."""
    length, before, after = EARLY_ANSWERS[case]
    head = b"POST /classify HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    head += b"Content-Type: multipart/form-data; boundary=b\r\n"
    head += b"" if length is None else f"Content-Length: {length}\r\n".encode()
    with socket.create_connection(("127.0.0.1", server), timeout=15) as connection:
        connection.sendall(head + b"\r\n" + before)
        assert _readable(connection, timeout_s=15), "no answer while the body was still arriving"
        for start in range(0, len(after), 16384):  # the rest, as a client that reads only at the end sends it
            connection.sendall(after[start : start + 16384])
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] in (b"400", b"413"), answer[:300]
    if b"application/json" in rest.partition(b"\r\n\r\n")[0]:  # uvicorn's own 400s for bad framing are plain text
        assert json.loads(rest.partition(b"\r\n\r\n")[2])["error"]

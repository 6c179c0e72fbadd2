"""The request timeout docs/contract.md promises: a request still unanswered after
WARDROBE_TIMEOUT_S gets 504 with a JSON error, and the server keeps serving.

The slow request is a client that trickles its upload, a byte every half
second: never pausing long enough for the body deadline's 408 (the minimum
rate is switched off here), never finishing, so the service is waiting for it,
deterministically, with no hook inside it, until the timeout answers.
"""

from __future__ import annotations

import json
import select
import socket
import time
from pathlib import Path

import httpx
import pytest
from wardrobe_server import running_server

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "service" / "samples" / "sneaker.png"
TIMEOUT_S = 5
BODY_IDLE_S = 2
BOUNDARY = "wardrobe-timeout-test"


@pytest.fixture(scope="module")
def server(tiny_model_path, tmp_path_factory) -> int:
    log = tmp_path_factory.mktemp("server") / "server.log"
    with running_server(log, model=tiny_model_path, check_log=False, WARDROBE_WORKERS="1",
                        WARDROBE_TIMEOUT_S=str(TIMEOUT_S), WARDROBE_BODY_IDLE_S=str(BODY_IDLE_S),
                        WARDROBE_BODY_MIN_RATE="0") as started:  # fmt: skip
        yield started.port


def _read_response(connection: socket.socket, timeout_s: float) -> tuple[int, bytes]:
    connection.settimeout(timeout_s)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed without a response: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split()[1]), body


@pytest.mark.slow
def test_a_request_unanswered_after_the_timeout_gets_504_and_the_server_keeps_serving(server):
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="images"; filename="sneaker.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + SAMPLE.read_bytes()
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    head = (
        f"POST /classify HTTP/1.1\r\nHost: 127.0.0.1:{server}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server), timeout=30) as connection:
        started = time.monotonic()
        connection.sendall(head + body[:64])
        sent = 64
        while not select.select([connection], [], [], 0.5)[0]:  # until the server answers
            assert time.monotonic() - started < TIMEOUT_S + 30, "no answer long after the timeout"
            assert sent < len(body) - 1, "the trickle ran out of body before the timeout"
            connection.sendall(body[sent : sent + 1])  # one byte per half second: slow, never idle
            sent += 1
        status, answer = _read_response(connection, timeout_s=30)
        waited = time.monotonic() - started
    assert status == 504, answer
    assert "error" in json.loads(answer)
    assert waited >= TIMEOUT_S * 0.9, f"answered after {waited:.1f} s, before the {TIMEOUT_S} s timeout"

    response = httpx.post(
        f"http://127.0.0.1:{server}/classify", files=[("images", ("sneaker.png", SAMPLE.read_bytes()))], timeout=30
    )
    assert response.status_code == 200, response.text

"""Graceful shutdown: a request in flight when SIGTERM arrives still gets its 200.

Kubernetes (and `docker stop`) send SIGTERM to the container's PID 1, which in
a Bento image is `bentoml serve`; a terminal's Ctrl-C signals the whole process
group. Both must drain. The request is made "in flight" without any hook in the
service: it asks `Expect: 100-continue`, so the server's `100 Continue` proves
the application has started reading its body; the rest of the body is only
sent after the signal.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest
from wardrobe_server import running_server

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "service" / "samples" / "sneaker.png"
BOUNDARY = "wardrobe-shutdown-test"


def _multipart(name: str, data: bytes) -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="images"; filename="{name}"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def _read_until(connection: socket.socket, marker: bytes, timeout_s: float) -> bytes:
    connection.settimeout(timeout_s)
    data = b""
    while marker not in data:
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _read_response(connection: socket.socket, timeout_s: float) -> tuple[int, bytes]:
    data = _read_until(connection, b"\r\n\r\n", timeout_s)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), data[:200]
    length = int(next(
        line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    ))  # fmt: skip
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split()[1]), body


@pytest.fixture
def server(tiny_model_path, tmp_path):
    with running_server(tmp_path / "server.log", model=tiny_model_path, WARDROBE_WORKERS="1") as started:
        yield started.process, started.port, started.log


@pytest.mark.parametrize("target", ["main-process", "process-group"])
def test_a_request_in_flight_at_sigterm_gets_its_200_and_the_server_exits(server, target):
    process, port, log = server
    body = _multipart("sneaker.png", SAMPLE.read_bytes())
    head = (
        f"POST /classify HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(head)
        assert b"100 Continue" in _read_until(connection, b"\r\n\r\n", timeout_s=30)
        connection.sendall(body[:64])  # the application is now reading this request's body

        if target == "main-process":
            os.kill(process.pid, signal.SIGTERM)
        else:
            os.killpg(process.pid, signal.SIGTERM)
        time.sleep(1.0)  # shutdown is under way: a server that did not drain has dropped us by now
        connection.sendall(body[64:])
        status, answer = _read_response(connection, timeout_s=30)
        assert status == 200, answer
        assert b'"label"' in answer

    returncode = process.wait(timeout=30)  # exits once drained (BentoML's worker grace is 30 s)
    text = log.read_text(errors="replace")
    assert returncode == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]

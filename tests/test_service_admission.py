"""service.admission: slow uploads get 408 and free their slot; past the cap, 503 before the body is read.

The middlewares are driven in-process first (httpx's ASGI transport, bodies as
timed async generators), then against the real `bentoml serve` with raw sockets
that send headers and a few bytes of an upload and then stall.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import anyio
import httpx
import pytest
from starlette.responses import JSONResponse
from wardrobe_server import running_server

from service.admission import BodyDeadline, ConnectionCap

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "service" / "samples" / "sneaker.png"
BOUNDARY = "wardrobe-admission-test"


async def _read_all(scope, receive, send) -> None:
    """An endpoint that reads the whole body and answers how many bytes it got."""
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    await JSONResponse({"bytes": size})(scope, receive, send)


def _stack(idle_s: float = 0.3, min_rate: int = 0, limit: int = 100) -> ConnectionCap:
    return ConnectionCap(BodyDeadline(_read_all, idle_s=idle_s, min_rate=min_rate), limit=limit)


def _post(app, body, path: str = "/classify", timeout_s: float = 10.0) -> httpx.Response:
    async def run() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            with anyio.fail_after(timeout_s):
                return await client.post(path, content=body)

    return anyio.run(run)


async def _chunks(parts: list[bytes], gap_s: float, stall_s: float = 0.0):
    for part in parts:
        yield part
        await anyio.sleep(gap_s)
    await anyio.sleep(stall_s)


def test_a_stalled_body_is_answered_408_within_the_idle_time_and_frees_its_slot():
    app = _stack(idle_s=0.3)
    started = time.monotonic()
    response = _post(app, _chunks([b"x" * 100], gap_s=0, stall_s=3600))
    elapsed = time.monotonic() - started
    assert response.status_code == 408
    assert response.headers["connection"] == "close"
    assert "request body too slow" in response.json()["error"] and "100 bytes in 0.3 s" in response.json()["error"]
    assert 0.3 <= elapsed < 1.3
    assert app.in_progress == 0


def test_a_body_trickling_below_the_minimum_rate_is_answered_408():
    # Every gap (0.1 s) is well inside the idle time, but 10 bytes per 0.1 s is 100 bytes/s < 1,000.
    app = _stack(idle_s=0.5, min_rate=1000)
    started = time.monotonic()
    response = _post(app, _chunks([b"y" * 10] * 100, gap_s=0.1))
    assert response.status_code == 408
    assert "1,000 bytes/s on average after the first 0.5 s" in response.json()["error"]
    assert time.monotonic() - started < 2.0


def test_a_body_arriving_steadily_is_read_in_full():
    app = _stack(idle_s=0.5, min_rate=1000)
    response = _post(app, _chunks([b"z" * 500] * 8, gap_s=0.1))
    assert response.status_code == 200
    assert response.json() == {"bytes": 4000}


def test_past_the_cap_a_request_gets_503_with_retry_after_before_its_body_is_read():
    app = _stack(idle_s=5, limit=3)
    read = []

    async def watched():
        read.append(True)
        yield b"never read"

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
            anyio.create_task_group() as tg,
        ):
            for _ in range(3):  # three stalled uploads fill the cap
                tg.start_soon(lambda: client.post("/classify", content=_chunks([b"a"], gap_s=0, stall_s=0.5)))
            await anyio.sleep(0.1)
            refused = await client.post("/classify", content=watched())
            probe = await client.get("/readyz")
        return refused, probe

    refused, probe = anyio.run(run)
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1" and refused.headers["connection"] == "close"
    assert "3 requests in progress" in refused.json()["error"]
    assert read == []
    assert probe.status_code == 200  # probes pass the cap (the test endpoint answers anything)
    assert app.in_progress == 0


# ---- the real server --------------------------------------------------------------------------

IDLE_S = 1.0
LIMITS = {
    "WARDROBE_WORKERS": "1",
    "WARDROBE_QUEUE_BOUND": "4",
    "WARDROBE_MAX_CONNECTIONS": "24",
    "WARDROBE_BODY_IDLE_S": str(IDLE_S),
}


@pytest.fixture(scope="module")
def server(tiny_model_path, tmp_path_factory) -> int:
    with running_server(tmp_path_factory.mktemp("server") / "server.log", model=tiny_model_path, **LIMITS) as started:
        yield started.port


def _stalled_upload(port: int, declared: int = 100_000) -> socket.socket:
    """Headers and the first bytes of a multipart upload, then nothing."""
    connection = socket.create_connection(("127.0.0.1", port))
    connection.sendall(
        f"POST /classify HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {declared}\r\n\r\n--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="images"; filename="slow.png"\r\n\r\n\x89PNG'.encode()
    )
    return connection


def _answer_and_close(connection: socket.socket, timeout_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes; and when it closed (monotonic)."""
    connection.settimeout(timeout_s)
    data = b""
    try:
        while chunk := connection.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data, time.monotonic()


def _classify(port: int) -> httpx.Response:
    files = [("images", ("sneaker.png", SAMPLE.read_bytes()))]
    return httpx.post(f"http://127.0.0.1:{port}/classify", files=files, timeout=10)


@pytest.mark.slow
def test_stalled_uploads_past_the_queue_bound_neither_lock_out_others_nor_stay_open(server):
    stalled = [_stalled_upload(server) for _ in range(12)]  # three times the queue bound
    opened = time.monotonic()
    time.sleep(0.2)
    assert _classify(server).status_code == 200
    for connection in stalled:
        data, closed = _answer_and_close(connection, timeout_s=IDLE_S + 5)
        assert data.startswith(b"HTTP/1.1 408 "), data[:200]
        assert b"request body too slow" in data
        assert closed - opened < IDLE_S + 2.0  # the benchmark's goal is +1 s; slack for a loaded CI box
        connection.close()


@pytest.mark.slow
def test_past_the_connection_cap_a_request_gets_503_before_it_sends_its_body(server):
    stalled = [_stalled_upload(server) for _ in range(24)]
    time.sleep(0.3)
    # Headers only: the answer must come without the body ever being sent.
    latecomer = socket.create_connection(("127.0.0.1", server))
    latecomer.sendall(b"POST /classify HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                      b"Content-Length: 5000\r\n\r\n")  # fmt: skip
    data, _ = _answer_and_close(latecomer, timeout_s=10)  # admitted, it would get a 408 instead
    assert data.startswith(b"HTTP/1.1 503 "), data[:200]
    assert b"retry-after: 1" in data.lower() and b"server busy" in data
    assert httpx.get(f"http://127.0.0.1:{server}/readyz", timeout=5).status_code == 200
    for connection in stalled:
        _answer_and_close(connection, timeout_s=IDLE_S + 5)
        connection.close()
    assert _classify(server).status_code == 200

"""Crashes and restarts: a worker killed under load, a model file gone while serving, a full disk.

The server is the real `bentoml serve` with two workers (BentoML's process
manager restarts a dead worker); workers are found as child processes running
BentoML's worker module, and one is "back" when its log says "wardrobe ready".
The full disk is a real one: a tmpfs a few kilobytes large (needs root, as
the project's CI runs).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import free_port

from contract.store import Store
from contract.store.items import MAX_PAGE
from service.serve import SERVICE, stop, wait_ready

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = (ROOT / "service" / "samples" / "sneaker.png").read_bytes()
WORKER_MODULE = "_bentoml_impl.worker.service"
READY_LINE = "wardrobe ready:"


class Server:
    def __init__(self, process: subprocess.Popen, url: str, log: Path, db: Path):
        self.process, self.url, self.log, self.db = process, url, log, db

    def workers(self) -> list[psutil.Process]:
        found = []
        for child in psutil.Process(self.process.pid).children(recursive=True):
            try:
                if WORKER_MODULE in " ".join(child.cmdline()):
                    found.append(child)
            except psutil.NoSuchProcess:
                continue
        return found

    def ready_count(self) -> int:
        return self.log.read_text(errors="replace").count(READY_LINE)

    def wait_for_ready_lines(self, count: int, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while self.ready_count() < count:
            assert time.monotonic() < deadline, f"no worker came back within {timeout_s:.0f} s"
            time.sleep(0.2)


def _start(model: Path, tmp: Path, workers: int) -> Server:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "WARDROBE_MODEL": str(model), "WARDROBE_WORKERS": str(workers),
           "WARDROBE_DB": str(tmp / "wardrobe.db"), "WARDROBE_MAX_BATCH_SIZE": "8"}  # fmt: skip
    log = tmp / "server.log"
    with open(log, "wb") as out:
        # Loopback: the wardrobe endpoints answer without a token only there (service/access.py).
        command = [sys.executable, "-m", "bentoml", "serve", SERVICE, "--port", str(port), "--host", "127.0.0.1"]
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(process, url, log, tmp / "wardrobe.db")
    try:
        wait_ready(process, url, timeout_s=180)
        server.wait_for_ready_lines(workers)
    except BaseException:
        stop(process)
        raise
    return server


@pytest.fixture(scope="module")
def two_workers(tiny_model_path, tmp_path_factory):
    server = _start(tiny_model_path, tmp_path_factory.mktemp("two-workers"), workers=2)
    yield server
    stop(server.process)


class Load:
    """Clients sending requests back to back; a connection dropped before any answer is retried once
    (what any client or ingress does for a request the server never answered), and counted."""

    def __init__(self, url: str, clients: int, request):
        self.url, self.request = url, request
        self.statuses: Counter[str] = Counter()
        self.dropped = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _run(self, index: int) -> None:
        n = 0
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                n += 1
                for attempt in range(2):
                    try:
                        response = self.request(client, f"{index}-{n}")
                    except httpx.TransportError as exc:
                        if attempt == 0:
                            self.dropped += 1
                            continue
                        response = exc
                    break
                self.statuses[str(getattr(response, "status_code", type(response).__name__))] += 1


def _classify(client: httpx.Client, name: str) -> httpx.Response:
    return client.post("/classify", files=[("images", (f"{name}.png", SAMPLE))])


def _add_four(client: httpx.Client, name: str) -> httpx.Response:
    return client.post("/wardrobe/items", files=[("images", (f"r{name}-{k}.png", SAMPLE)) for k in range(4)])


@pytest.mark.slow
def test_a_worker_killed_under_load_loses_no_request_and_comes_back(two_workers):
    server = two_workers
    before = server.ready_count()
    first, second = server.workers()
    with Load(server.url, clients=8, request=_classify) as load:
        time.sleep(2)
        first.send_signal(signal.SIGKILL)
        server.wait_for_ready_lines(before + 1)
        # The restarted worker serves: with the other original killed too, it is all that is left.
        time.sleep(1)
        second.send_signal(signal.SIGKILL)
        server.wait_for_ready_lines(before + 2)
        time.sleep(2)
    assert set(load.statuses) == {"200"}, load.statuses
    assert load.statuses["200"] > 50
    assert load.dropped <= 2 * 8, load.dropped  # at most the requests in flight on a killed worker
    workers = server.workers()
    assert len(workers) == 2 and {w.pid for w in workers}.isdisjoint({first.pid, second.pid})


@pytest.mark.slow
def test_a_worker_killed_mid_upload_or_mid_write_leaves_the_wardrobe_consistent(two_workers):
    server = two_workers
    # Mid-upload: half a body sent, the worker holding this connection is killed.
    boundary = "crash"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="half.png"\r\n\r\n'.encode()
            + SAMPLE + f"\r\n--{boundary}--\r\n".encode())  # fmt: skip
    connection = socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
    head = (
        f"POST /wardrobe/items HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    connection.sendall(head.encode())
    connection.settimeout(30)
    assert connection.recv(100).startswith(b"HTTP/1.1 100"), "the upload gate did not start reading"
    connection.sendall(body[: len(body) // 2])
    local_port = connection.getsockname()[1]
    [holder] = [w for w in server.workers() if any(c.raddr and c.raddr.port == local_port
                                                  for c in w.net_connections("tcp"))]  # fmt: skip
    before = server.ready_count()
    holder.send_signal(signal.SIGKILL)
    assert connection.recv(100) == b""  # the connection died with the worker, unanswered
    connection.close()
    server.wait_for_ready_lines(before + 1)
    # Mid-write: four-file uploads (one transaction each) while workers are killed at random moments.
    with Load(server.url, clients=4, request=_add_four) as load:
        for delay in (1.0, 1.7, 0.6):
            time.sleep(delay)
            before = server.ready_count()
            server.workers()[0].send_signal(signal.SIGKILL)
            server.wait_for_ready_lines(before + 1)
    assert set(load.statuses) == {"201"}, load.statuses
    with sqlite3.connect(server.db) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with Store.open(str(server.db), create=False) as store:
        items, before = [], None
        while page := store.page(limit=MAX_PAGE, before=before):
            items += page.items
            if (before := page.next_before) is None:
                break
        names = Counter(item.filename.rsplit("-", 1)[0] for item in items)
        assert "half.png" not in {item.filename for item in items}
        # Every upload whole, none half (an upload retried after its answer was lost may be stored twice).
        assert names and all(n % 4 == 0 for n in names.values()), names
        for item in items:
            assert store.thumbnail(item.id)[0] and store.model_input(item.id).shape == (28, 28)
    assert len(names) >= load.statuses["201"]  # each 201 stored; a retried drop may have landed twice


@pytest.mark.slow
def test_a_model_file_gone_while_serving_does_not_stop_the_service(tiny_model_path, tmp_path):
    model = tmp_path / "model.onnx"
    shutil.copyfile(tiny_model_path, model)
    server = _start(model, tmp_path, workers=1)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            answer = _classify(client, "before").json()
            model.write_bytes(b"overwritten: not a model any more")
            assert _classify(client, "garbled").json() == answer
            model.unlink()
            assert _classify(client, "deleted").json() == answer
            assert client.get("/readyz").status_code == 200
    finally:
        stop(server.process)


# ---- a full disk during `wardrobe export` and `wardrobe report` -------------------------------


@pytest.fixture
def full_disk(tmp_path):
    """A directory on a 4 KiB tmpfs: the first real write fills it."""
    mount = tmp_path / "full"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def _wardrobe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wardrobe", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.slow
def test_a_full_disk_during_export_leaves_no_file_and_names_it(tiny_model_path, full_disk):
    checkpoint = tiny_model_path.with_name("tiny.pt")  # written beside it by the fixture
    out = full_disk / "model.onnx"
    result = _wardrobe("export", str(checkpoint), "--out", str(out))
    assert result.returncode == 1
    assert f"{out}: cannot write the model (No space left on device)" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(full_disk.iterdir()) == []


@pytest.mark.slow
def test_a_full_disk_during_report_leaves_no_file_and_names_it(tiny_model_path, full_disk):
    out = full_disk / "report"
    result = _wardrobe("report", "--model", str(tiny_model_path), "--out", str(out))
    assert result.returncode == 1
    assert f"{out}: cannot write the report (No space left on device)" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(full_disk.iterdir()) == []

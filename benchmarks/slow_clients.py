"""Slow-client benchmark: a normal request's latency while 1,000 stalled uploads are held open.

    python -m benchmarks.slow_clients [--model models/cnn.onnx] [--stalled 1000] [--duration 20]

Starts `bentoml serve` (settings from WARDROBE_* variables: default workers,
WARDROBE_BODY_IDLE_S and the rest), then opens `--stalled` connections that
each send request headers and the first bytes of a multipart upload to
/classify and then stall (a "slowloris"). Each one waits for the server to
answer and close it, records what it got and how long after its stall the
close came, and reconnects at once, so that many stalled uploads are held open
for the whole run. Meanwhile a second process sends ordinary one-image
requests back to back, each on a new connection, and records status and
latency. Before the attack the same client runs alone for a baseline.

Goals (issue 14): every normal request gets 200 with p99 under 200 ms, and
every stalled connection is closed within WARDROBE_BODY_IDLE_S + 1 s.
Client and server share the machine's cores: whole-box figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

from benchmarks.provenance import provenance
from service.serve import SERVICE, stop, wait_ready
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "service" / "samples" / "sneaker.png"
BOUNDARY = "wardrobe-slow-client"
STALLED_PREFIX = (
    f"POST /classify HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
    f"Content-Length: 200000\r\n\r\n--{BOUNDARY}\r\n"
    'Content-Disposition: form-data; name="images"; filename="slow.png"\r\nContent-Type: image/png\r\n\r\n'
).encode() + b"\x89PNG\r\n\x1a\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def normal_client(url: str, duration_s: float, results: multiprocessing.Queue) -> None:
    """Ordinary one-image requests back to back for `duration_s`; puts [(status, seconds), ...]."""
    files = [("images", ("sneaker.png", IMAGE.read_bytes()))]
    out = []
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            status = httpx.post(f"{url}/classify", files=files, timeout=30).status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        out.append((status, time.perf_counter() - started))
    results.put(out)


def run_normal(url: str, duration_s: float) -> multiprocessing.Process:
    queue = multiprocessing.get_context("spawn").Queue()
    process = multiprocessing.get_context("spawn").Process(target=normal_client, args=(url, duration_s, queue))
    process.start()
    process.queue = queue  # type: ignore[attr-defined]
    return process


def summarise_normal(samples: list[tuple]) -> dict:
    latencies = np.array([s for _, s in samples]) * 1000
    codes: dict[str, int] = {}
    for status, _ in samples:
        codes[str(status)] = codes.get(str(status), 0) + 1
    return {
        "requests": len(samples),
        "statuses": codes,
        "p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "p99_ms": round(float(np.percentile(latencies, 99)), 1),
        "max_ms": round(float(latencies.max()), 1),
    }


async def stalled_upload(
    port: int, give_up_s: float, connecting: asyncio.Semaphore, on_stalled: Callable[[], None]
) -> tuple[str, float | None]:
    """One stalled upload: (what the server answered, seconds from the stall to the close)."""
    async with connecting:  # open them in waves, within the listen backlog
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(STALLED_PREFIX)
        await writer.drain()
        stalled_at = time.monotonic()
        on_stalled()
        data = b""
        try:
            async with asyncio.timeout(give_up_s):
                while chunk := await reader.read(65536):
                    data += chunk
        except TimeoutError:
            return "still open", None
        except ConnectionResetError:
            pass
        status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/1.1 ") else "closed, no answer"
        return status, time.monotonic() - stalled_at
    finally:
        writer.close()


class Attack:
    """Keep `stalled` stalled uploads open until `stop()`; every one the server closes is replaced."""

    def __init__(self, port: int, stalled: int, give_up_s: float):
        self.port = port
        self.stalled = stalled
        self.give_up_s = give_up_s
        self.outcomes: list[tuple[str, float | None]] = []
        self.all_open = asyncio.Event()
        self._stopping = False
        self._stalls = 0

    def stop(self) -> None:
        self._stopping = True

    async def run(self) -> None:
        connecting = asyncio.Semaphore(100)
        await asyncio.gather(*(self._slot(connecting) for _ in range(self.stalled)))

    def _stalled(self) -> None:
        self._stalls += 1
        if self._stalls == self.stalled:
            self.all_open.set()

    async def _slot(self, connecting: asyncio.Semaphore) -> None:
        while not self._stopping:
            try:
                self.outcomes.append(await stalled_upload(self.port, self.give_up_s, connecting, self._stalled))
            except OSError as exc:
                self.outcomes.append((f"connect failed: {type(exc).__name__}", None))
                await asyncio.sleep(0.1)


def summarise_stalled(outcomes: list, idle_s: float) -> dict:
    closes = np.array([s for _, s in outcomes if s is not None])
    statuses: dict[str, int] = {}
    for status, _ in outcomes:
        statuses[status] = statuses.get(status, 0) + 1
    return {
        "connections": len(outcomes),
        "statuses": statuses,
        "close_after_stall_s": {
            "p50": round(float(np.percentile(closes, 50)), 3),
            "p99": round(float(np.percentile(closes, 99)), 3),
            "max": round(float(closes.max()), 3),
        },
        "closed_within_idle_plus_1s": int((closes <= idle_s + 1).sum()),
    }


async def attack_and_measure(url: str, port: int, stalled: int, duration_s: float, idle_s: float) -> tuple:
    attack = Attack(port, stalled, give_up_s=idle_s + 30)
    attacking = asyncio.ensure_future(attack.run())
    await attack.all_open.wait()
    normal = run_normal(url, duration_s)
    samples = await asyncio.to_thread(normal.queue.get)
    normal.join()
    attack.stop()  # no more reconnects; the connections still open are waited for and measured too
    await attacking
    return samples, attack.outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "cnn.onnx")
    parser.add_argument("--stalled", type=int, default=1000, help="stalled uploads held open (default 1000)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of normal requests under attack")
    parser.add_argument("--baseline", type=float, default=5.0, help="seconds of normal requests before")
    parser.add_argument("--note", default="", help="stored with the results (what else ran on the machine)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "slow_clients.json")
    args = parser.parse_args()
    if not args.model.is_file():
        sys.exit(f"benchmarks.slow_clients: {args.model}: model file not found")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < args.stalled + 100:
        sys.exit(f"benchmarks.slow_clients: the open-file limit ({hard}) is too low for {args.stalled} connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the server inherits it too
    settings = Settings.from_env()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(tempfile.mkdtemp(prefix="wardrobe-slow-")) / "server.log"
    env = {**os.environ, "WARDROBE_MODEL": str(args.model)}
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", SERVICE, "--port", str(port)],
                                  cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            wait_ready(server, url, timeout_s=180)
            baseline = run_normal(url, args.baseline)
            baseline_samples = baseline.queue.get()
            baseline.join()
            samples, outcomes = asyncio.run(
                attack_and_measure(url, port, args.stalled, args.duration, settings.body_idle_s)
            )
        finally:
            stop(server)
    normal = summarise_normal(samples)
    attack_summary = summarise_stalled(outcomes, settings.body_idle_s)
    results = {
        "started": started,
        "note": args.note,
        "model": str(args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT) else args.model),
        "stalled_held_open": args.stalled,
        "duration_s": args.duration,
        "settings": {
            "workers": settings.workers or os.cpu_count(),
            "body_idle_s": settings.body_idle_s,
            "body_min_rate": settings.body_min_rate,
            "max_connections": settings.max_connections,
            "queue_bound": settings.queue_bound,
        },
        "baseline": summarise_normal(baseline_samples),
        "under_attack": normal,
        "stalled": attack_summary,
        "goals": {
            "normal_all_200": normal["statuses"] == {"200": normal["requests"]},
            "normal_p99_under_200ms": normal["p99_ms"] < 200,
            "stalled_closed_within_idle_plus_1s": attack_summary["closed_within_idle_plus_1s"]
            == attack_summary["connections"],
        },
        **provenance("benchmarks.slow_clients"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average_after": os.getloadavg()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: results[k] for k in ("baseline", "under_attack", "stalled", "goals")}, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()

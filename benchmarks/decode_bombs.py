"""Decode-bomb benchmark: a normal request's latency, and a worker's memory, while small files that
decode to 40 MP arrive in a loop.

    python -m benchmarks.decode_bombs [--model models/cnn.onnx] [--clients 6] [--duration 20]

Starts `bentoml serve` with one worker (settings otherwise from WARDROBE_*
variables), then runs `--clients` clients that each POST, back to back, PNGs of
one colour that are 5–120 KiB on the wire and ~40 MP when decoded: one-bit,
8-bit grey and 8-bit RGB (made row by row here, so making them costs nothing).
Meanwhile a second process sends ordinary one-image requests back to back and
records status and latency; before the attack the same client runs alone for a
baseline. The worker's RSS is sampled every 20 ms throughout.

Goals (issue 25): normal requests all 200 with p99 ≤ 50 ms, and the worker's peak
RSS at most 300 MiB over its RSS before the attack. Client and server share the
machine's cores: whole-box figures, with the load average recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import shlex
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import httpx
import psutil

from benchmarks.slow_clients import free_port, summarise_normal
from contract.metadata import source_commit
from service.serve import SERVICE, stop, wait_ready
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "service" / "samples" / "sneaker.png"
SIDE = 6324
"""6,324² = 39,992,976 pixels: just under the default 40 MP limit, so every bomb is decoded."""
MiB = 1024 * 1024


def png_bomb(side: int, bit_depth: int, colour_type: int, channels: int) -> bytes:
    """A PNG of one colour, `side` × `side`, compressed row by row (never whole in memory)."""
    row = b"\x00" + b"\x00" * ((side * channels * bit_depth + 7) // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", side, side, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


BOMBS = {
    "1-bit": png_bomb(SIDE, 1, 0, 1),
    "grey": png_bomb(SIDE, 8, 0, 1),
    "rgb": png_bomb(SIDE, 8, 2, 3),
}


async def bomb_client(url: str, kinds: list[str], stop_at: float, statuses: dict[str, int]) -> None:
    """POST bombs back to back, cycling through `kinds`, until `stop_at`; count what came back."""
    async with httpx.AsyncClient(timeout=60) as client:
        i = 0
        while time.monotonic() < stop_at:
            kind = kinds[i % len(kinds)]
            i += 1
            try:
                response = await client.post(f"{url}/classify", files=[("images", (f"{kind}.png", BOMBS[kind]))])
                key = f"{kind} {response.status_code}"
            except httpx.HTTPError as exc:
                key = f"{kind} {type(exc).__name__}"
            statuses[key] = statuses.get(key, 0) + 1


def normal_client(url: str, duration_s: float, results: multiprocessing.Queue) -> None:
    """One-image requests back to back on one kept-alive connection for `duration_s`: the client's own
    cost (a new connection, a TLS context per request) stays out of the figure. Puts [(status, s), ...]."""
    files = [("images", ("sneaker.png", IMAGE.read_bytes()))]
    out = []
    with httpx.Client(base_url=url, timeout=30) as http:
        http.get("/livez")
        deadline = time.monotonic() + duration_s
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                status = http.post("/classify", files=files).status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            out.append((status, time.perf_counter() - started))
    results.put(out)


def measure_normal(url: str, duration_s: float) -> list[tuple]:
    """normal_client in its own process (its own core share and GIL), waited for."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=normal_client, args=(url, duration_s, queue))
    process.start()
    samples = queue.get(timeout=duration_s + 120)  # a client that died must not hang the run
    process.join()
    return samples


def bombs_in_thread(url: str, clients: int, duration_s: float, statuses: dict[str, int]) -> threading.Thread:
    def run() -> None:
        stop_at = time.monotonic() + duration_s
        kinds = list(BOMBS)
        loops = [bomb_client(url, kinds[i % 3 :] + kinds[: i % 3], stop_at, statuses) for i in range(clients)]

        async def all_loops() -> None:
            await asyncio.gather(*loops)

        asyncio.run(all_loops())

    thread = threading.Thread(target=run, name="bombs")
    thread.start()
    return thread


class RssSampler:
    """The peak RSS of the server's worker processes, sampled every 20 ms on a thread."""

    def __init__(self, server_pid: int):
        self.server = psutil.Process(server_pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss")

    def workers(self) -> list[psutil.Process]:
        # bentoml serve -> circus arbiter -> worker(s): the worker is the child whose command runs the service.
        return [p for p in self.server.children(recursive=True) if "--fd" in " ".join(p.cmdline())]

    def rss(self) -> int:
        return max((p.memory_info().rss for p in self.workers()), default=0)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            with contextlib.suppress(psutil.Error):  # a worker that just went
                self.peak = max(self.peak, self.rss())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "cnn.onnx")
    parser.add_argument("--clients", type=int, default=6, help="clients sending bombs in a loop (default 6)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of normal requests under attack")
    parser.add_argument("--baseline", type=float, default=5.0, help="seconds of normal requests before")
    parser.add_argument(
        "--tree",
        type=Path,
        default=ROOT,
        help="serve the code of this checkout instead (a worktree of an earlier commit: before/after)",
    )
    parser.add_argument("--note", default="", help="stored with the results (what else ran on the machine)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "decode_bombs.json")
    args = parser.parse_args()
    if not args.model.is_file():
        sys.exit(f"benchmarks.decode_bombs: {args.model}: model file not found")
    settings = Settings.from_env()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(tempfile.mkdtemp(prefix="wardrobe-bombs-")) / "server.log"
    tree = args.tree.resolve()
    env = {**os.environ, "PYTHONPATH": str(tree), "WARDROBE_MODEL": str(args.model), "WARDROBE_WORKERS": "1",
           "WARDROBE_DB": str(log.with_name("w.db"))}  # fmt: skip
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_before = os.getloadavg()
    statuses: dict[str, int] = {}
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", SERVICE, "--port", str(port)],
                                  cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            wait_ready(server, url, timeout_s=180)
            baseline_samples = measure_normal(url, args.baseline)
            with RssSampler(server.pid) as rss:
                rss_before = rss.rss()
                bombs = bombs_in_thread(url, args.clients, args.duration + 2, statuses)
                time.sleep(1)  # the attack is under way before the first measured request
                samples = measure_normal(url, args.duration)
                bombs.join()
        finally:
            stop(server)
    under = summarise_normal(samples)
    growth_mib = round((rss.peak - rss_before) / MiB, 1)
    results = {
        "command": shlex.join([sys.executable.rsplit("/", 1)[-1], "-m", "benchmarks.decode_bombs", *sys.argv[1:]]),
        "commit": source_commit(tree),
        "started": started,
        "note": args.note,
        "model": str(args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT) else args.model),
        "bombs": {kind: {"bytes": len(data), "pixels": SIDE * SIDE} for kind, data in BOMBS.items()},
        "clients": args.clients,
        "duration_s": args.duration,
        "settings": {
            "workers": 1,
            "max_pixels": settings.max_pixels,
            "decode_pixels": settings.decode_pixels,
            "decode_threads": settings.decode_threads,
            "decode_queue": settings.decode_queue,
        },
        "baseline": summarise_normal(baseline_samples),
        "under_attack": under,
        "bomb_statuses": dict(sorted(statuses.items())),
        "worker_rss_mib": {
            "before": round(rss_before / MiB, 1),
            "peak": round(rss.peak / MiB, 1),
            "peak_growth": growth_mib,
        },  # fmt: skip
        "goals": {
            "normal_all_200": under["statuses"] == {"200": under["requests"]},
            "normal_p99_at_most_50ms": under["p99_ms"] <= 50,
            "rss_growth_at_most_300mib": growth_mib <= 300,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },  # fmt: skip
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: results[k] for k in ("baseline", "under_attack", "bomb_statuses", "worker_rss_mib",
                                             "goals")}, indent=2))  # fmt: skip
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()

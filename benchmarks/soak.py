"""Soak: 64 connections for N minutes of mixed uploads; failures and each worker's memory.

    python -m benchmarks.soak [--minutes 10] [--connections 64] [--model models/cnn.onnx]

Starts `bentoml serve` (settings from WARDROBE_* variables, a fresh wardrobe
database in a temporary folder), then keeps `--connections` clients busy, each
sending one request after another: product-photo-like images
(photo_sim/photolike.py), real 28×28 Fashion-MNIST test crops and bad files
(truncated, random bytes, text, SVG, empty, a pixel bomb) to POST /classify,
and a share of good and bad files to POST /wardrobe/items. Good files must get
2xx and bad ones 4xx; anything else is counted, and a 5xx, a dropped
connection or a timeout is a failure (goal: 0). Each worker's resident memory
is sampled when the server is ready, after a warm-up of `--warmup` requests,
every 30 s and at the end (goal: growth from after the warm-up to the end
under 10%).
Client and server share the machine's cores: whole-box figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
from PIL import Image

from benchmarks.provenance import provenance
from photo_sim.photolike import photo_like_set
from service.serve import SERVICE, stop, wait_ready
from training.fashion_mnist import load

ROOT = Path(__file__).resolve().parents[1]
WORKER_MODULE = "_bentoml_impl.worker.service"


def corpus(seed: int) -> dict[str, list[tuple[str, bytes]]]:
    """Named files by kind: photos, crops (both good), bad."""
    rng = np.random.default_rng(seed)
    test = load().test_images
    picks = rng.choice(len(test), 300, replace=False)
    crops = []
    for i in picks[:200]:
        buffer = io.BytesIO()
        Image.fromarray(test[i]).save(buffer, "PNG")
        crops.append((f"crop-{i}.png", buffer.getvalue()))
    photo_picks = picks[200:]
    made = photo_like_set(test[photo_picks], seed)
    photos = [(f"photo-{i}.{fmt.lower()}", data) for i, (data, fmt) in zip(photo_picks, made, strict=True)]
    bomb = io.BytesIO()
    Image.new("L", (9000, 9000)).save(bomb, "PNG")  # 81 MP: over the default 40 MP limit
    bad = [(f"truncated-{name}", data[: len(data) // 2]) for name, data in photos[:20]]
    bad += [(f"random-{i}.jpg", rng.integers(0, 256, int(rng.integers(1, 5000)), dtype=np.uint8).tobytes())
            for i in range(20)]  # fmt: skip
    bad += [("notes.txt", b"not an image\n" * 10), ("empty.png", b""), ("bomb.png", bomb.getvalue()),
            ("drawing.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="9" height="9"/></svg>')]  # fmt: skip
    return {"photo": photos, "crop": crops, "bad": bad}


def worker_rss(server: subprocess.Popen) -> dict[int, int]:
    """Resident memory (bytes) of each BentoML worker process under the server, by pid."""
    out = {}
    for child in psutil.Process(server.pid).children(recursive=True):
        try:
            if WORKER_MODULE in " ".join(child.cmdline()):
                out[child.pid] = child.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return out


class Tally:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.latencies: list[float] = []
        self.failed = 0  # 5xx answers, dropped connections, timeouts
        self.failures: list[str] = []  # the first few, for the record

    def add(self, key: str, seconds: float | None, failure: str | None) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1
        if seconds is not None:
            self.latencies.append(seconds)
        if failure:
            self.failed += 1
            if len(self.failures) < 20:
                self.failures.append(failure)


async def client_loop(client: httpx.AsyncClient, files, stop_at: float, max_requests: int, wardrobe_share: float,
                      tally: Tally, rng: random.Random) -> None:  # fmt: skip
    while time.monotonic() < stop_at and sum(tally.counts.values()) < max_requests:
        kind = rng.choices(["photo", "crop", "bad"], weights=[0.4, 0.4, 0.2])[0]
        path = "/wardrobe/items" if rng.random() < wardrobe_share else "/classify"
        name, data = rng.choice(files[kind])
        started = time.perf_counter()
        try:
            response = await client.post(path, files=[("images", (name, data))])
            status = response.status_code
        except httpx.HTTPError as exc:
            tally.add(f"{path} {kind} {type(exc).__name__}", None, f"{path} {name}: {exc!r}")
            continue
        elapsed = time.perf_counter() - started
        expected = 400 <= status < 500 if kind == "bad" else 200 <= status < 300
        failure = None if status < 500 else f"{path} {name}: {status} {response.text[:200]}"
        tally.add(f"{path} {kind} {status}" + ("" if expected else " (unexpected)"), elapsed, failure)


async def soak(url: str, files, seconds: float, max_requests: int, connections: int, wardrobe_share: float,
               seed: int) -> Tally:  # fmt: skip
    tally = Tally()
    # Idle connections expire on the client first: uvicorn closes them after 5 s, and a request sent
    # on one just as the server closes it is lost (httpx's default expiry is also 5 s).
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=2)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        stop_at = time.monotonic() + seconds
        loops = [client_loop(client, files, stop_at, max_requests, wardrobe_share, tally, random.Random(seed + i))
                 for i in range(connections)]  # fmt: skip
        await asyncio.gather(*loops)
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "cnn.onnx")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the soak (default 10)")
    parser.add_argument("--warmup", type=int, default=2000,
                        help="requests before the start RSS is taken (default 2,000)")  # fmt: skip
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--wardrobe-share", type=float, default=0.1, help="share of uploads to /wardrobe/items")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--note", default="", help="stored with the results (what else ran on the machine)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "soak.json")
    args = parser.parse_args()
    if not args.model.is_file():
        sys.exit(f"benchmarks.soak: {args.model}: model file not found")
    files = corpus(args.seed)
    work = Path(tempfile.mkdtemp(prefix="wardrobe-soak-"))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "WARDROBE_MODEL": str(args.model), "WARDROBE_DB": str(work / "wardrobe.db")}
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    samples: list[dict] = []

    async def run() -> tuple[Tally, Tally]:
        async def sample_every(period: float, done: asyncio.Event) -> None:
            while not done.is_set():
                samples.append({"t_s": round(time.monotonic() - t0, 1), "rss_mib": _mib(worker_rss(server))})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), period)

        warm = await soak(url, files, 3600, args.warmup, args.connections, args.wardrobe_share, args.seed)
        rss["after_warmup"] = worker_rss(server)
        done = asyncio.Event()
        sampler = asyncio.ensure_future(sample_every(30, done))
        main_run = await soak(
            url, files, args.minutes * 60, sys.maxsize, args.connections, args.wardrobe_share, args.seed + 1000
        )
        done.set()
        await sampler
        return warm, main_run

    rss: dict[str, dict[int, int]] = {}
    with open(work / "server.log", "wb") as log:
        # Loopback: the wardrobe endpoints answer without a token only there (service/access.py).
        command = [sys.executable, "-m", "bentoml", "serve", SERVICE, "--port", str(port), "--host", "127.0.0.1"]
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(server, url, timeout_s=180)
            rss["ready"] = worker_rss(server)
            t0 = time.monotonic()
            warm, tally = asyncio.run(run())
            rss["end"] = worker_rss(server)
        finally:
            stop(server)
    tracebacks = (work / "server.log").read_text(errors="replace").count("Traceback")
    growth = {
        str(pid): round(100 * (rss["end"].get(pid, 0) / start - 1), 1) for pid, start in rss["after_warmup"].items()
    }
    latencies = np.array(tally.latencies) * 1000
    requests = sum(tally.counts.values())
    failures = tally.failed
    results = {
        "started": started,
        "note": args.note,
        "model": str(args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT) else args.model),
        "minutes": args.minutes,
        "connections": args.connections,
        "warmup_requests": args.warmup,
        "wardrobe_share": args.wardrobe_share,
        "requests": requests,
        "req_per_s": round(requests / (args.minutes * 60), 1),
        "failures": failures,
        "unexpected": sum(n for key, n in tally.counts.items() if key.endswith("(unexpected)")),
        "by_outcome": dict(sorted(tally.counts.items())),
        "failure_examples": tally.failures,
        "p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "p99_ms": round(float(np.percentile(latencies, 99)), 1),
        "worker_rss_mib": {stage: _mib(values) for stage, values in rss.items()},
        "worker_rss_growth_pct": growth,
        "rss_samples": samples,
        "server_log_tracebacks": tracebacks,
        "warmup_requests_sent": sum(warm.counts.values()),
        "goals": {
            "no_failures": failures == 0,
            "rss_growth_under_10pct": all(g < 10 for g in growth.values()) and len(rss["end"]) == len(growth),
        },
        **provenance("benchmarks.soak"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average_after": os.getloadavg()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    summary = {k: results[k] for k in ("requests", "req_per_s", "failures", "unexpected", "p50_ms", "p99_ms",
                                       "worker_rss_mib", "worker_rss_growth_pct", "goals")}  # fmt: skip
    print(json.dumps(summary, indent=2))
    print(f"written to {args.out}")


def _mib(values: dict[int, int]) -> dict[str, float]:
    return {str(pid): round(rss / 2**20, 1) for pid, rss in values.items()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()

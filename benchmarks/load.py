"""Load benchmark: wrk against the service and against a minimal reference server, same run.

    python -m benchmarks.load [--model models/cnn.onnx] [--duration 30] [--out FILE]

Starts `bentoml serve` (service/service.py, settings from WARDROBE_* variables),
benchmarks/reference_server.py (one Starlette + onnxruntime process, one
inference per request, no batching) and benchmarks/noop_service.py (our BentoML
set-up doing nothing: the ceiling) on free ports, then, level by level and
taking turns, runs wrk with one 28x28 PNG per request at 1, 16
and 64 connections, then 64-image requests. The mean batch size the service
formed at each level comes from its /metrics. Results go to benchmarks/results/.
wrk shares the machine's cores with the servers: these are whole-box figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from service.serve import SERVICE, stop, wait_ready

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "service" / "samples" / "sneaker.png"

# wrk script: a multipart body of WRK_FILES copies of WRK_IMAGE; prints one JSON line at the end.
LUA = r"""
local f = io.open(os.getenv("WRK_IMAGE"), "rb"); local img = f:read("*all"); f:close()
local n = tonumber(os.getenv("WRK_FILES") or "1")
local b = "----wardrobe-bench-7d1f"
local parts = {}
for i = 1, n do
  parts[#parts + 1] = "--" .. b .. "\r\nContent-Disposition: form-data; name=\"images\"; " ..
    "filename=\"s" .. i .. ".png\"\r\nContent-Type: image/png\r\n\r\n" .. img .. "\r\n"
end
wrk.method = "POST"
wrk.body = table.concat(parts) .. "--" .. b .. "--\r\n"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. b
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests": %d, "duration_s": %.3f, "non_2xx": %d, ' ..
    '"socket_errors": %d, "timeouts": %d, "p50_ms": %.2f, "p99_ms": %.2f, "mean_ms": %.2f}\n',
    summary.requests, summary.duration / 1e6, e.status, e.connect + e.read + e.write,
    e.timeout, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3, latency.mean / 1e3))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wrk(url: str, connections: int, duration: int, files: int, script: Path) -> dict:
    """One wrk run; its summary with req/s and images/s added."""
    env = {**os.environ, "WRK_IMAGE": str(IMAGE), "WRK_FILES": str(files)}
    threads = min(2, connections)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s",
               "-s", str(script), f"{url}/classify"]  # fmt: skip
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    result = json.loads(out.split("WRKJSON", 1)[1])
    result["req_per_s"] = round(result["requests"] / result["duration_s"], 1)
    result["images_per_s"] = round(result["req_per_s"] * files, 1)
    result["failed"] = result["non_2xx"] + result["socket_errors"] + result["timeouts"]
    return result


def batch_counters(url: str) -> tuple[float, float]:
    """(calls, images) so far in the service's wardrobe_batch_size histogram, all workers."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()

    def total(name: str) -> float:
        return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))

    return total("wardrobe_batch_size_count"), total("wardrobe_batch_size_sum")


def start_servers(model: Path, log_dir: Path, ceiling: bool) -> dict[str, tuple[subprocess.Popen, str]]:
    env = {**os.environ, "WARDROBE_MODEL": str(model)}
    servers = {}
    commands = {
        "service": [sys.executable, "-m", "bentoml", "serve", SERVICE],
        "reference": [sys.executable, "-m", "benchmarks.reference_server", "--model", str(model)],
    }
    if ceiling:
        commands["bentoml-noop"] = [sys.executable, "-m", "bentoml", "serve",
                                    "benchmarks.noop_service:Noop"]  # fmt: skip
    for name, command in commands.items():
        port = free_port()
        log = open(log_dir / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the server
        process = subprocess.Popen([*command, "--port", str(port)], cwd=ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        servers[name] = (process, f"http://127.0.0.1:{port}")
    for process, url in servers.values():
        wait_ready(process, url, timeout_s=180)
    return servers


def run(model: Path, duration: int, levels: list[int], batch_connections: int, ceiling: bool) -> dict:
    log_dir = Path(tempfile.mkdtemp(prefix="wardrobe-load-"))
    script = log_dir / "post.lua"
    script.write_text(LUA)
    servers = start_servers(model, log_dir, ceiling)
    service_url = servers["service"][1]
    results: dict = {"single_image": {}, "multi_image": {}}
    try:
        for _, url in servers.values():  # warm both: connections, caches, first batches
            wrk(url, 16, 2, 1, script)
        for connections in levels:
            row = {}
            for name, (_, url) in servers.items():
                before = batch_counters(service_url) if name == "service" else None
                row[name] = wrk(url, connections, duration, 1, script)
                if before is not None:
                    calls, images = (a - b for a, b in zip(batch_counters(service_url), before,
                                                           strict=True))  # fmt: skip
                    row[name]["mean_batch_size"] = round(images / calls, 2) if calls else None
                print(f"{connections:>3} connections, {name:>9}: {_line(row[name])}", flush=True)
            results["single_image"][str(connections)] = row
        for name, (_, url) in servers.items():
            before = batch_counters(service_url) if name == "service" else None
            result = wrk(url, batch_connections, duration, 64, script)
            if before is not None:
                calls, images = (a - b for a, b in zip(batch_counters(service_url), before,
                                                       strict=True))  # fmt: skip
                result["mean_batch_size"] = round(images / calls, 2) if calls else None
            results["multi_image"][name] = result
            print(f"64 images x {batch_connections} connections, {name:>9}: {_line(result)}")
    finally:
        for process, _ in servers.values():
            stop(process)
    return results


def _line(r: dict) -> str:
    batch = f", mean batch {r['mean_batch_size']}" if r.get("mean_batch_size") else ""
    return (f"{r['req_per_s']:8.1f} req/s {r['images_per_s']:9.1f} img/s  p50 {r['p50_ms']:7.1f} ms"
            f"  p99 {r['p99_ms']:7.1f} ms  failed {r['failed']}{batch}")  # fmt: skip


def table(results: dict) -> str:
    """The README's markdown table."""
    lines = [
        "| load | server | req/s | images/s | p50 ms | p99 ms | failed | mean batch |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [(f"1 image, {c} conn", row) for c, row in results["single_image"].items()]
    rows.append((f"64 images, {results['batch_connections']} conn", results["multi_image"]))
    for load, row in rows:
        for name, r in row.items():
            lines.append(
                f"| {load} | {name} | {r['req_per_s']:.0f} | {r['images_per_s']:.0f} | "
                f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['failed']} | "
                f"{r.get('mean_batch_size') or '–'} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "cnn.onnx")
    parser.add_argument("--duration", type=int, default=30, help="seconds per level (default 30)")
    parser.add_argument("--levels", default="1,16,64", help="connections, comma-separated")
    parser.add_argument("--batch-connections", type=int, default=8,
                        help="connections for the 64-image requests (default 8)")  # fmt: skip
    parser.add_argument("--no-ceiling", dest="ceiling", action="store_false",
                        help="skip benchmarks/noop_service.py (BentoML doing nothing)")  # fmt: skip
    parser.add_argument("--note", default="", help="stored with the results (what model, what else ran)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "load.json")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("benchmarks.load: wrk is not installed (apt-get install wrk)")
    if not args.model.is_file():
        sys.exit(f"benchmarks.load: {args.model}: model file not found")
    levels = [int(c) for c in args.levels.split(",")]
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    results = run(args.model, args.duration, levels, args.batch_connections, args.ceiling)
    results |= {
        "started": started,
        "note": args.note,
        "model": str(args.model),
        "duration_s": args.duration,
        "batch_connections": args.batch_connections,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_after": os.getloadavg(),
        },  # fmt: skip
        "settings": {k: v for k, v in os.environ.items() if k.startswith("WARDROBE_")},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print("\n" + table(results))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

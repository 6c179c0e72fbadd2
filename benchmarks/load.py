"""Load benchmark: wrk against the service, a minimal reference server and raw onnxruntime, same run.

    python -m benchmarks.load [--model models/cnn.onnx] [--duration 30] [--baseline REF] [--out FILE]

Starts `bentoml serve` (service/service.py, settings from WARDROBE_* variables),
benchmarks/reference_server.py (one Starlette + onnxruntime process, one
inference per request, no batching) and benchmarks/noop_service.py (our BentoML
set-up doing nothing: the ceiling) on free ports; with `--baseline REF`, also
the service as it was at git revision REF ("service-before", from `git
archive`), so a change is measured before and after in one run. Then, level by
level and taking turns, wrk sends one 28x28 PNG per request at 1, 16 and 64
connections; 64-image requests; and one 12-megapixel JPEG per request (a
synthetic phone photo) to the services. Beside the 64-image level it measures
raw onnxruntime on the same model: as many processes as the service has
workers, each with the service's intra-op threads, running batches of 64 in a
loop (before and after the level; the mean is the yardstick for the service's
`ratio_to_raw`). The mean batch size each service formed comes from its
/metrics. Results go to benchmarks/results/. wrk shares the machine's cores
with the servers: these are whole-box figures.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing
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

import numpy as np
import psutil
from PIL import Image, ImageDraw

from benchmarks.provenance import provenance
from contract.preprocess import load_image_file, to_fashion_mnist, to_model_input
from contract.runtime import load_model
from service.serve import SERVICE, stop, wait_ready
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "service" / "samples" / "sneaker.png"
BATCH = 64
PHOTO_SIZE = (4032, 3024)  # 12 MP, a phone camera's 4:3 frame
SERVICES = ("service", "service-before")

# wrk script: a multipart body of WRK_FILES copies of WRK_IMAGE; prints one JSON line at the end.
LUA = r"""
local f = io.open(os.getenv("WRK_IMAGE"), "rb"); local img = f:read("*all"); f:close()
local n = tonumber(os.getenv("WRK_FILES") or "1")
local ext = os.getenv("WRK_IMAGE"):match("%.(%w+)$")
local b = "----wardrobe-bench-7d1f"
local parts = {}
for i = 1, n do
  parts[#parts + 1] = "--" .. b .. "\r\nContent-Disposition: form-data; name=\"images\"; " ..
    "filename=\"s" .. i .. "." .. ext .. "\"\r\nContent-Type: image/" .. ext .. "\r\n\r\n" .. img .. "\r\n"
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


def wrk(url: str, connections: int, duration: int, files: int, script: Path, image: Path = IMAGE) -> dict:
    """One wrk run; its summary with req/s and images/s added."""
    env = {**os.environ, "WRK_IMAGE": str(image), "WRK_FILES": str(files)}
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


def cpu_seconds(process: subprocess.Popen) -> float:
    """User + system CPU time of a server so far, its worker processes included."""
    parent = psutil.Process(process.pid)  # psutil comes with BentoML
    return sum(sum(p.cpu_times()[:2]) for p in [parent, *parent.children(recursive=True)])


def measure(name: str, server: tuple[subprocess.Popen, str], connections: int, duration: int, files: int,
            script: Path, image: Path = IMAGE) -> dict:  # fmt: skip
    """wrk against one server, with the server's CPU time per image and, for our services, the
    mean batch size they formed meanwhile. CPU time per image is what the training runs sharing
    the cores do not distort: wall-clock rates follow how much of the cores a server got."""
    process, url = server
    before = batch_counters(url) if name in SERVICES else None
    cpu = cpu_seconds(process)
    result = wrk(url, connections, duration, files, script, image)
    images = result["requests"] * files
    result["cpu_ms_per_image"] = round((cpu_seconds(process) - cpu) * 1000 / images, 4) if images else None
    if before is not None:
        calls, images = (a - b for a, b in zip(batch_counters(url), before, strict=True))
        result["mean_batch_size"] = round(images / calls, 2) if calls else None
    return result


def _raw_worker(model: str, threads: int, batch: np.ndarray, duration: float, start, results) -> None:
    classifier = load_model(model, device="cpu", threads=threads)
    for _ in range(3):  # warm-up
        classifier.probabilities(batch)
    start.wait()
    calls, began, cpu = 0, time.perf_counter(), time.process_time()
    while (elapsed := time.perf_counter() - began) < duration:
        classifier.probabilities(batch)
        calls += 1
    results.put((calls * len(batch), elapsed, time.process_time() - cpu))


def raw_onnxruntime(model: Path, workers: int, threads: int, duration: float) -> dict:
    """images/s of bare `Classifier.probabilities` on batches of 64 sample images, laid out like the
    service: `workers` processes with `threads` intra-op threads each, all running at once."""
    batch = to_model_input([to_fashion_mnist(load_image_file(IMAGE))] * BATCH)
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(workers), context.Queue()
    processes = [context.Process(target=_raw_worker, args=(str(model), threads, batch, duration, start, results))
                 for _ in range(workers)]  # fmt: skip
    for process in processes:
        process.start()
    per_process = [results.get(timeout=duration + 300) for _ in processes]
    for process in processes:
        process.join()
    images = sum(n for n, _, _ in per_process)
    return {
        "images_per_s": round(sum(n / elapsed for n, elapsed, _ in per_process), 1),
        "cpu_ms_per_image": round(sum(cpu for _, _, cpu in per_process) * 1000 / images, 4),
        "processes": workers, "threads": threads, "batch": BATCH, "duration_s": duration,
    }  # fmt: skip


def phone_photo(path: Path, seed: int = 0) -> Path:
    """A synthetic 12 MP phone photo: a dark garment on a light, slightly uneven, noisy ground."""
    width, height = PHOTO_SIZE
    image = Image.new("RGB", PHOTO_SIZE, (214, 210, 204))
    draw = ImageDraw.Draw(image)
    draw.polygon([(1300, 700), (2700, 700), (3100, 1300), (2800, 1450), (2650, 1200), (2600, 2500),
                  (1400, 2500), (1350, 1200), (1200, 1450), (900, 1300)], fill=(40, 52, 90))  # fmt: skip
    rng = np.random.default_rng(seed)
    pixels = np.asarray(image, dtype=np.float32)
    pixels += np.linspace(-12, 12, width, dtype=np.float32)[None, :, None]  # light falls off sideways
    pixels += rng.normal(0, 6, (height, width, 1)).astype(np.float32)  # sensor noise
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    path.write_bytes(buffer.getvalue())
    return path


def baseline_tree(ref: str, directory: Path) -> Path:
    """The repository's files at git revision `ref`, unpacked into `directory`."""
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True, check=True).stdout
    directory.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return directory


def start_servers(model: Path, log_dir: Path, ceiling: bool, baseline: Path | None) -> dict[str, tuple]:
    env = {**os.environ, "WARDROBE_MODEL": str(model)}
    # Each server its own BENTOML_HOME: `bentoml serve` empties $BENTOML_HOME/prometheus_multiproc_dir
    # when it starts, so servers sharing one would wipe each other's /metrics.
    bentoml_serve = [sys.executable, "-m", "bentoml", "serve"]
    commands = {"service": (ROOT, [*bentoml_serve, SERVICE])}
    if baseline is not None:
        commands["service-before"] = (baseline, [*bentoml_serve, SERVICE])
    commands["reference"] = (ROOT, [sys.executable, "-m", "benchmarks.reference_server", "--model", str(model)])
    if ceiling:
        commands["bentoml-noop"] = (ROOT, [*bentoml_serve, "benchmarks.noop_service:Noop"])
    servers = {}
    for name, (tree, command) in commands.items():
        port = free_port()
        log = open(log_dir / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the server
        own = {"PYTHONPATH": str(tree), "BENTOML_HOME": str(log_dir / f"{name}-home")}
        process = subprocess.Popen([*command, "--port", str(port)], cwd=tree, env={**env, **own},
                                   stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        servers[name] = (process, f"http://127.0.0.1:{port}")
    for process, url in servers.values():
        wait_ready(process, url, timeout_s=300)
    return servers


def batch_level(args: argparse.Namespace, settings: Settings, servers: dict, script: Path) -> tuple[dict, dict]:
    """64-image requests to every server, between two runs of raw onnxruntime (their mean is the
    yardstick: the cores' share left by whatever else runs drifts over minutes)."""
    raw, rows = [], {}
    for name, server in [("raw", None), *servers.items(), ("raw", None)]:
        if server is None:
            raw.append(raw_onnxruntime(args.model, settings.workers, settings.threads, args.duration))
            print(f"raw onnxruntime, batch {BATCH}: {raw[-1]['images_per_s']:.1f} img/s, "
                  f"{raw[-1]['cpu_ms_per_image']:.3f} CPU ms/img", flush=True)  # fmt: skip
            continue
        rows[name] = measure(name, server, args.batch_connections, args.duration, BATCH, script)
        print(f"{BATCH} images x {args.batch_connections} connections, {name:>14}: {_line(rows[name])}", flush=True)
    yardstick = sum(r["images_per_s"] for r in raw) / len(raw)
    cpu_yardstick = sum(r["cpu_ms_per_image"] for r in raw) / len(raw)
    for result in rows.values():
        result["ratio_to_raw"] = round(result["images_per_s"] / yardstick, 3)
        if result["cpu_ms_per_image"]:  # the same ratio in CPU time: raw's cost over ours
            result["cpu_ratio_to_raw"] = round(cpu_yardstick / result["cpu_ms_per_image"], 3)
    summary = {
        **raw[0], "images_per_s": round(yardstick, 1), "cpu_ms_per_image": round(cpu_yardstick, 4),
        "runs": [{k: r[k] for k in ("images_per_s", "cpu_ms_per_image")} for r in raw],
    }  # fmt: skip
    return rows, summary


def run(args: argparse.Namespace, settings: Settings) -> dict:
    log_dir = Path(tempfile.mkdtemp(prefix="wardrobe-load-"))
    script = log_dir / "post.lua"
    script.write_text(LUA)
    baseline = baseline_tree(args.baseline, log_dir / "before") if args.baseline else None
    servers = start_servers(args.model, log_dir, args.ceiling, baseline)
    results: dict = {"single_image": {}, "multi_image": {}, "photo": {}}
    try:
        for _, url in servers.values():  # warm all: connections, caches, first batches
            wrk(url, 16, 2, 1, script)
        for connections in args.levels:
            row = results["single_image"][str(connections)] = {}
            for name, server in servers.items():
                row[name] = measure(name, server, connections, args.duration, 1, script)
                print(f"{connections:>3} connections, {name:>14}: {_line(row[name])}", flush=True)
        if args.batch_connections:
            results["multi_image"], results["raw_onnxruntime"] = batch_level(args, settings, servers, script)
        if args.photo_connections:
            photo = phone_photo(log_dir / "photo.jpg")
            results["photo_bytes"] = photo.stat().st_size
            for name, server in servers.items():
                if name in SERVICES:
                    results["photo"][name] = measure(name, server, args.photo_connections, args.duration, 1, script,
                                                     photo)  # fmt: skip
                    print(f"12 MP photo x {args.photo_connections} connections, {name:>14}: "
                          f"{_line(results['photo'][name])}", flush=True)  # fmt: skip
    finally:
        for process, _ in servers.values():
            stop(process)
    return results


def _line(r: dict) -> str:
    batch = f", mean batch {r['mean_batch_size']}" if r.get("mean_batch_size") else ""
    ratio = f", {r['ratio_to_raw']:.2f}x raw" if "ratio_to_raw" in r else ""
    ratio += f" ({r['cpu_ratio_to_raw']:.2f}x in CPU time)" if "cpu_ratio_to_raw" in r else ""
    cpu = f", {r['cpu_ms_per_image']:.3f} CPU ms/img" if r.get("cpu_ms_per_image") else ""
    return (f"{r['req_per_s']:8.1f} req/s {r['images_per_s']:9.1f} img/s  p50 {r['p50_ms']:7.1f} ms"
            f"  p99 {r['p99_ms']:7.1f} ms  failed {r['failed']}{cpu}{batch}{ratio}")  # fmt: skip


def table(results: dict) -> str:
    """The markdown table in docs/benchmarks.md."""
    lines = [
        "| load | server | req/s | images/s | p50 ms | p99 ms | failed | CPU ms/image | mean batch | × raw (CPU) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [(f"1 image, {c} conn", row) for c, row in results["single_image"].items()]
    if results["multi_image"]:
        rows.append((f"{BATCH} images, {results['batch_connections']} conn", results["multi_image"]))
    if results.get("photo"):
        rows.append((f"12 MP JPEG, {results['photo_connections']} conn", results["photo"]))
    for load, row in rows:
        for name, r in row.items():
            ratio = f"{r['ratio_to_raw']:.2f} ({r.get('cpu_ratio_to_raw', 0):.2f})" if "ratio_to_raw" in r else "–"
            lines.append(
                f"| {load} | {name} | {r['req_per_s']:.0f} | {r['images_per_s']:.0f} | "
                f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['failed']} | {r.get('cpu_ms_per_image') or '–'} | "
                f"{r.get('mean_batch_size') or '–'} | {ratio} |"
            )
    if raw := results.get("raw_onnxruntime"):
        lines.append(f"| {BATCH} images | raw onnxruntime ({raw['processes']} × {raw['threads']} threads) | – | "
                     f"{raw['images_per_s']:.0f} | – | – | – | {raw['cpu_ms_per_image']} | {BATCH} | 1 |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "cnn.onnx")
    parser.add_argument("--duration", type=int, default=30, help="seconds per level (default 30)")
    parser.add_argument("--levels", default="1,16,64", help="connections, comma-separated")
    parser.add_argument("--batch-connections", type=int, default=8,
                        help=f"connections for the {BATCH}-image requests (default 8; 0 skips them)")  # fmt: skip
    parser.add_argument("--photo-connections", type=int, default=16,
                        help="connections for the 12 MP photo level (default 16; 0 skips it)")  # fmt: skip
    parser.add_argument("--baseline", metavar="REF",
                        help="also serve the service at this git revision, as service-before")  # fmt: skip
    parser.add_argument("--no-ceiling", dest="ceiling", action="store_false",
                        help="skip benchmarks/noop_service.py (BentoML doing nothing)")  # fmt: skip
    parser.add_argument("--note", default="", help="stored with the results (what model, what else ran)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "load.json")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("benchmarks.load: wrk is not installed (apt-get install wrk)")
    if not args.model.is_file():
        sys.exit(f"benchmarks.load: {args.model}: model file not found")
    args.model = args.model.resolve()
    args.levels = [int(c) for c in args.levels.split(",") if c]
    if args.baseline:
        try:
            subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{args.baseline}^{{commit}}"],
                           cwd=ROOT, check=True, capture_output=True)  # fmt: skip
        except subprocess.CalledProcessError:
            sys.exit(f"benchmarks.load: --baseline {args.baseline}: not a git revision of this repository")
    settings = Settings.from_env().resolved(gpu=False, cpu_count=os.cpu_count() or 1)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    results = run(args, settings)
    results |= {
        "started": started,
        "note": args.note,
        "model": os.path.relpath(args.model, ROOT) if args.model.is_relative_to(ROOT) else str(args.model),
        "model_sha256": hashlib.sha256(args.model.read_bytes()).hexdigest(),  # shipped models get replaced
        "baseline": args.baseline,
        "duration_s": args.duration,
        "batch_connections": args.batch_connections,
        "photo_connections": args.photo_connections,
        **provenance("benchmarks.load"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_after": os.getloadavg(),
        },  # fmt: skip
        "settings": {k: v for k, v in os.environ.items() if k.startswith("WARDROBE_")},
        "resolved": {"workers": settings.workers, "threads": settings.threads},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print("\n" + table(results))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

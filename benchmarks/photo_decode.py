"""Milliseconds to turn one phone photo into model input: full decode vs reduced-scale decode.

    .venv/bin/python -m benchmarks.photo_decode [--sizes 1 3 12 48] [--formats JPEG PNG WEBP HEIF AVIF]
                                                [--repeats 7]

For each size (megapixels, 4:3 like a phone camera) and format, one photo-like
upload (photo_sim/photolike.py: a garment on a light, uneven, noisy background)
is stored as a phone would (`phone_photo`), then timed through
`to_fashion_mnist(decode_image(...))` both ways, alternating, in one run:
`longest_side=None` (every pixel decoded: how it was) and the default (JPEG
decoded at 1/2–1/8 scale in the DCT, other formats box-reduced at once).
Medians go to benchmarks/results/photo_decode.json. 48 MP is over the
service's default pixel limit (40 MP), so this benchmark raises the limit.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from contract.files import write_json
from contract.metadata import source_commit
from contract.preprocess import DEFAULT_MAX_PIXELS, decode_image, to_fashion_mnist
from photo_sim.photolike import PHONE_FORMATS, make_photo_like, phone_photo
from training.fashion_mnist import load

RESULTS = Path(__file__).resolve().parent / "results" / "photo_decode.json"
CAMERAS = {1: (1152, 864), 3: (2016, 1512), 12: (4032, 3024), 48: (8064, 6048)}
"""Megapixels -> (width, height) of a 4:3 phone photo; 12 MP is the common phone camera."""
GOAL_MS = 15.0
"""Issue #16: a 12 MP JPEG preprocessed in at most 15 ms on this machine."""


def time_both(data: bytes, repeats: int, max_pixels: int) -> dict:
    """Median ms of decode + crop, full and reduced, measured alternately so noise hits both.

    Wall time, and this process's CPU time: with other work on the cores, the CPU time of a
    single-threaded decode (JPEG, PNG, WebP) is what its wall time would be on idle cores;
    multi-threaded decoders (libheif, libavif) add up the CPU time of all their threads.
    """
    ways = {"full": {"longest_side": None}, "reduced": {}}
    wall: dict[str, list[float]] = {way: [] for way in ways}
    cpu: dict[str, list[float]] = {way: [] for way in ways}
    crops = {}
    for _ in range(repeats):
        for way, kwargs in ways.items():
            gc.collect()
            start, start_cpu = time.perf_counter(), time.process_time()
            image = decode_image(data, max_pixels, **kwargs)
            crops[way] = to_fashion_mnist(image)
            cpu[way].append(1000 * (time.process_time() - start_cpu))
            wall[way].append(1000 * (time.perf_counter() - start))
            if way == "reduced":
                decoded_size = list(image.size)
            del image
    full, reduced = statistics.median(wall["full"]), statistics.median(wall["reduced"])
    return {
        "ms_full": round(full, 2),
        "ms_reduced": round(reduced, 2),
        "speedup": round(full / reduced, 2),
        "cpu_ms_full": round(statistics.median(cpu["full"]), 2),
        "cpu_ms_reduced": round(statistics.median(cpu["reduced"]), 2),
        "ms_full_all": [round(t, 1) for t in wall["full"]],
        "ms_reduced_all": [round(t, 1) for t in wall["reduced"]],
        "decoded_size_reduced": decoded_size,
        "crop_mean_abs_difference": round(float(np.abs(crops["full"].astype(int) - crops["reduced"]).mean()), 2),
    }


def run(sizes: list[int], formats: list[str], repeats: int, seed: int) -> dict:
    load_before = [round(x, 2) for x in os.getloadavg()]  # other work on the cores while we measure
    data = load()
    rng = np.random.default_rng(seed)
    photo, _ = make_photo_like(data.test_images[int(rng.integers(len(data.test_labels)))], rng)
    max_pixels = max(DEFAULT_MAX_PIXELS, max(w * h for w, h in (CAMERAS[s] for s in sizes)))
    rows = []
    for megapixels in sizes:
        size = CAMERAS[megapixels]
        for fmt in formats:
            start = time.perf_counter()
            upload = phone_photo(photo, size, fmt, rng)
            made = time.perf_counter() - start
            row = {"megapixels": megapixels, "size": list(size), "format": fmt, "bytes": len(upload)}
            row |= time_both(upload, repeats, max_pixels)
            row["seconds_encoding"] = round(made, 1)
            rows.append(row)
            print(
                f"{megapixels:>3} MP {fmt:<5} {len(upload) / 1e6:6.2f} MB   full {row['ms_full']:8.1f} ms"
                f" (CPU {row['cpu_ms_full']:7.1f})   reduced {row['ms_reduced']:7.1f} ms"
                f" (CPU {row['cpu_ms_reduced']:6.1f})   ×{row['speedup']}"
            )
            del upload
    twelve = next((r for r in rows if r["megapixels"] == 12 and r["format"] == "JPEG"), None)
    return {
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "command": "python -m benchmarks.photo_decode "
        + f"--sizes {' '.join(map(str, sizes))} --formats {' '.join(formats)} --repeats {repeats} --seed {seed}",
        "what": "ms per photo for to_fashion_mnist(decode_image(bytes)): full decode vs reduced-scale decode, "
        "medians of alternating repeats",
        "max_pixels": max_pixels,
        "goal_ms_12mp_jpeg": GOAL_MS,
        "ms_12mp_jpeg_reduced": twelve and twelve["ms_reduced"],
        "cpu_ms_12mp_jpeg_reduced": twelve and twelve["cpu_ms_reduced"],
        "meets_goal": bool(twelve and twelve["ms_reduced"] <= GOAL_MS),
        "meets_goal_in_cpu_time": bool(twelve and twelve["cpu_ms_reduced"] <= GOAL_MS),
        "rows": rows,
        "commit": source_commit(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "noise": "other work on the cores raises wall times (see the load averages); before/after alternate",
        "measured_at": time.strftime("%Y-%m-%d %H:%M"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(CAMERAS), choices=list(CAMERAS))
    parser.add_argument("--formats", nargs="+", default=list(PHONE_FORMATS), choices=list(PHONE_FORMATS))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args(argv)
    result = run(args.sizes, args.formats, args.repeats, args.seed)
    write_json(result, args.out)
    print(f"wrote {args.out}")
    if result["ms_12mp_jpeg_reduced"] is not None:
        verdict = "meets" if result["meets_goal"] else "MISSES"
        print(
            f"12 MP JPEG: {result['ms_12mp_jpeg_reduced']} ms wall, {result['cpu_ms_12mp_jpeg_reduced']} ms CPU"
            f" ({verdict} the goal ≤ {GOAL_MS} ms in wall time)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

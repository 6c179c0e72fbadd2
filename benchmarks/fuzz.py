"""The upload fuzz, run long: tests/test_upload_fuzz.py's in-process property with many more examples.

    python -m benchmarks.fuzz [--examples 20000]

The CI run of that test sends a few hundred generated requests; this runs the
same property (same strategies, same assertions: only 2xx/4xx, an answer within
10 s, no request taking more than 64 MiB) with `--examples` of them and records how many
cases ran, by status, how long it took and whether it passed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from contract.metadata import source_commit

ROOT = Path(__file__).resolve().parents[1]
TEST = "tests/test_upload_fuzz.py::test_any_upload_gets_a_2xx_or_a_4xx_with_an_error_in_seconds"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20_000, help="generated requests (default 20,000)")
    parser.add_argument("--note", default="", help="stored with the results (what else ran on the machine)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fuzz.json")
    args = parser.parse_args()
    report = Path(tempfile.mkdtemp(prefix="wardrobe-fuzz-")) / "tally.json"
    env = {**os.environ, "WARDROBE_FUZZ_EXAMPLES": str(args.examples), "WARDROBE_FUZZ_REPORT": str(report)}
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    t0 = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST],
                            cwd=ROOT, env=env, capture_output=True, text=True)  # fmt: skip
    seconds = time.monotonic() - t0
    if not report.is_file():
        sys.exit(f"benchmarks.fuzz: the test did not run:\n{result.stdout[-3000:]}{result.stderr[-2000:]}")
    tally = json.loads(report.read_text())
    results = {
        "started": started,
        "note": args.note,
        "command": f"python -m benchmarks.fuzz --examples {args.examples}",
        "examples_asked": args.examples,
        **tally,
        "passed": result.returncode == 0,
        "seconds": round(seconds, 1),
        "pytest_tail": result.stdout.strip().splitlines()[-1:],
        "commit": source_commit(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average_after": os.getloadavg()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: results[k] for k in ("cases", "statuses", "largest_request_memory_mib", "passed", "seconds")}))
    print(f"written to {args.out}")
    if result.returncode != 0:
        sys.exit(f"benchmarks.fuzz: the property failed:\n{result.stdout[-4000:]}")


if __name__ == "__main__":
    main()

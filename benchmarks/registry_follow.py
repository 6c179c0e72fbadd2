"""How fast every worker of every replica follows a promotion in the model registry, under load.

Starts two servers (`bentoml serve`, WARDROBE_WORKERS workers each) on one database
(--db: a PostgreSQL URL, or by default a fresh SQLite file), keeps --clients threads
classifying on both, then promotes and rolls back --rounds times, alternating the
replica asked. Per change it records, from the registry's own timestamps (one
machine clock), the time from the promotion's commit to each worker's confirmation,
and the time the HTTP answer took; every /classify answer's status counts.

    python -m benchmarks.registry_follow [--db postgresql://...] [--rounds 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import onnx

from benchmarks.provenance import provenance
from contract.store.registry import Registry
from service.serve import start, stop, wait_ready

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "cnn.onnx"
SAMPLE = ROOT / "service" / "samples" / "sneaker.png"
ADMIN = "benchmark-admin-token"


def variant(src: Path, dst: Path, **metadata: str) -> Path:
    """The same network under other bytes (more metadata entries): the same answers, another SHA-256."""
    proto = onnx.load(str(src))
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(dst))
    return dst


class Load:
    """Client threads classifying in a loop on every url until stopped; each answer is kept as
    (monotonic time the request started, status or error, model_sha256 of the answer)."""

    def __init__(self, urls: list[str], clients: int = 4):
        self.urls, self.answers, self.stop = urls, [], threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def _run(self, i: int) -> None:
        files = [("images", ("sneaker.png", SAMPLE.read_bytes(), "image/png"))]
        clients = [httpx.Client(base_url=url, timeout=60) for url in self.urls]
        n = i
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                response = clients[n % len(clients)].post("/classify", files=files)
                sha = response.json()[0]["model_sha256"] if response.status_code == 200 else None
                self.answers.append((started, response.status_code, sha))
            except Exception as exc:  # a dropped connection counts as a failure
                self.answers.append((started, repr(exc), None))
            n += 1
        for c in clients:
            c.close()

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)

    def failures(self) -> list:
        return [a for a in self.answers if a[1] != 200]

    def wait_for(self, more: int) -> None:
        """Until `more` further answers came back."""
        target = len(self.answers) + more
        while len(self.answers) < target:
            time.sleep(0.02)


@contextmanager
def server(workers: int):
    """A server (`wardrobe serve`'s start) on a free port with WARDROBE_* from the environment; its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ["WARDROBE_WORKERS"] = str(workers)
    process = start(MODEL, port, "127.0.0.1")
    try:
        wait_ready(process, f"http://127.0.0.1:{port}", timeout_s=300)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def followed(db: str, sha: str, workers: int, timeout_s: float = 60) -> list[float]:
    """Seconds from `sha`'s promotion (its commit) to each worker's confirmation, once all `workers` confirmed."""
    deadline = time.monotonic() + timeout_s
    with Registry.open(db, create=False) as registry:
        while time.monotonic() < deadline:
            serving = [c for c in registry.confirmations() if c.model_sha256 == sha]
            if len(serving) >= workers:
                promoted = registry.get(sha).promoted_at
                return sorted((c.confirmed_at - promoted).total_seconds() for c in serving)
            time.sleep(0.02)
    raise RuntimeError(f"not every worker followed {sha} within {timeout_s} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="", help="WARDROBE_DB for both servers (default: a fresh SQLite file)")
    parser.add_argument("--workers", type=int, default=2, help="workers per server (default 2)")
    parser.add_argument("--clients", type=int, default=4, help="threads classifying throughout (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="promotion + rollback pairs (default 3)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "registry_follow.json")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="wardrobe-registry-"))
    db = args.db or str(tmp / "wardrobe.db")
    all_workers = 2 * args.workers
    changes = []
    with ExitStack() as stack:
        os.environ.update({"WARDROBE_DB": db, "WARDROBE_ADMIN_TOKEN": ADMIN, "WARDROBE_MAX_BATCH_SIZE": "16"})
        urls = [stack.enter_context(server(args.workers)) for _ in range(2)]
        admins = [stack.enter_context(httpx.Client(base_url=u, timeout=120, headers={
            "Authorization": f"Bearer {ADMIN}"})) for u in urls]  # fmt: skip
        candidate = variant(MODEL, tmp / "candidate.onnx", note=f"benchmark {time.time()}")
        sha = admins[0].post("/admin/models", content=candidate.read_bytes()).json()["model"]["sha256"]
        with Load(urls, args.clients) as load:
            load.wait_for(20)
            for round_ in range(args.rounds):
                for kind, path in (("promote", f"/admin/models/{sha}/promote"), ("rollback", "/admin/models/rollback")):
                    admin = admins[(2 * round_ + (kind == "rollback")) % 2]
                    asked = time.perf_counter()
                    answer = admin.post(path)
                    answered_s = time.perf_counter() - asked
                    if answer.status_code != 200:
                        raise RuntimeError(f"{kind}: {answer.status_code} {answer.text}")
                    new = answer.json()["model"]["sha256"]
                    lags = followed(db, new, all_workers)
                    changes.append({"change": kind, "http_answer_s": round(answered_s, 3),
                                    "commit_to_each_worker_s": [round(x, 3) for x in lags],
                                    "commit_to_all_workers_s": round(lags[-1], 3),
                                    "confirmed_in_answer": answer.json()["confirmed"]})  # fmt: skip
                    load.wait_for(20)
    worst = max(c["commit_to_all_workers_s"] for c in changes)
    results = {
        **provenance("benchmarks.registry_follow"),
        "backend": "postgresql" if db.startswith("postgresql") else "sqlite",
        "servers": 2, "workers_per_server": args.workers, "clients": args.clients,
        "changes": changes,
        "worst_commit_to_all_workers_s": worst,
        "requests": len(load.answers), "failed_requests": len(load.failures()),
        "goals": {"all_workers_within_1s": worst <= 1.0, "no_failed_request": not load.failures()},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average_after": os.getloadavg()},
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: results[k] for k in ("backend", "worst_commit_to_all_workers_s", "requests",
                                              "failed_requests", "goals")}, indent=2))  # fmt: skip
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()

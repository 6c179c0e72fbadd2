"""Start the real service (`bentoml serve`) for tests: on a free port, with only the settings given.

`running_server` is the one way tests start it; `wardrobe_server` is the wardrobe tests' shorthand
(shipped model, own database). tests/conftest.py keeps one server for the whole session
(`shared_server`) for tests that need no settings of their own.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from service.model_choice import default_model_path
from service.serve import SERVICE, stop, wait_ready

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "service" / "samples"
# The shipped CNN, so the sample photos land on the shelves a person expects.
MODEL = ROOT / "models" / "cnn.onnx"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, for a test server."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Server:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def running_server(
    log: Path,
    *,
    model: Path | None = None,
    host: str = "127.0.0.1",
    service: str = SERVICE,
    check_log: bool = True,
    **settings: str,
) -> Iterator[Server]:
    """Yield a ready server of `service` serving `model` with `settings` (environment variables; no
    WARDROBE_* one is inherited from this process, and its BentoML and data homes are its own, beside
    `log`); stop it and its workers afterwards, then fail on a traceback in its log (unless `check_log`
    is false)."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WARDROBE_")}
    # Its own BENTOML_HOME: BentoML empties the /metrics directory there when a server starts. Its own
    # data home: without WARDROBE_DB the server makes its database there and registers its model (issue 31).
    homes = {"BENTOML_HOME": log.parent / f"bentoml-home-{port}", "XDG_DATA_HOME": log.parent / f"data-home-{port}"}
    environment |= {k: str(v) for k, v in homes.items()}
    environment |= {**({"WARDROBE_MODEL": str(model)} if model else {}), **settings}
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", service, "--port", str(port), "--host", host],
            cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            wait_ready(process, f"http://127.0.0.1:{port}", timeout_s=180)
            yield Server(process, port, log)
        finally:
            stop(process)
    text = log.read_text(errors="replace")
    assert not check_log or "Traceback" not in text, text[-4000:]


@contextmanager
def wardrobe_server(db: str, log: Path, *, token: str = "", host: str = "127.0.0.1", workers: int = 1, **env):
    """Yield the base URL of a running server with the shipped model and the database `db`."""
    with running_server(
        log,
        model=MODEL if MODEL.is_file() else default_model_path(),
        host=host,
        WARDROBE_DB=db,
        WARDROBE_TOKEN=token,
        WARDROBE_WORKERS=str(workers),
        WARDROBE_MAX_BATCH_SIZE="16",
        **env,
    ) as server:  # fmt: skip  (a smaller warm-up: faster start)
        yield server.url


def client(url: str, token: str = "") -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, headers=headers, timeout=60)

"""Start the real service (`bentoml serve`) for wardrobe tests: shipped model, own database, free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import httpx

from contract.runtime import default_model_path
from service.serve import SERVICE, stop, wait_ready

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "service" / "samples"
# The shipped CNN, so the sample photos land on the shelves a person expects.
MODEL = ROOT / "models" / "cnn.onnx"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def wardrobe_server(db: str, log: Path, *, token: str = "", host: str = "127.0.0.1", workers: int = 1, **env):
    """Yield the base URL of a running server; stop it afterwards and fail on any traceback."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WARDROBE_")}
    environment |= {
        "WARDROBE_MODEL": str(MODEL if MODEL.is_file() else default_model_path()),
        "WARDROBE_DB": db,
        "WARDROBE_TOKEN": token,
        "WARDROBE_WORKERS": str(workers),
        "WARDROBE_MAX_BATCH_SIZE": "16",
        **env,
    }  # fmt: skip  (a smaller warm-up: faster start)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", SERVICE, "--port", str(port), "--host", host],
            cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            wait_ready(process, f"http://127.0.0.1:{port}", timeout_s=180)
            yield f"http://127.0.0.1:{port}"
        finally:
            stop(process)
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text[-4000:]


def client(url: str, token: str = "") -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, headers=headers, timeout=60)

"""`wardrobe serve` and `wardrobe demo`: start the BentoML service (`bentoml serve` underneath).

The server runs in its own process group, and whatever ends the command —
Ctrl-C, SIGTERM, an error — stops that whole group: no `bentoml serve` or
worker process outlives `wardrobe serve`/`demo` holding the port.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from contract.runtime import check_model_file, choose_model
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "service.service:Wardrobe"
SAMPLE = ROOT / "service" / "samples" / "sneaker.png"
"""Fashion-MNIST test image #9, a sneaker: what the demo's curl line classifies."""


def start(model: Path | None, port: int, host: str) -> subprocess.Popen:
    """Check the settings and the model here (one clear line if wrong), then start the server."""
    settings = Settings.from_env(os.environ)  # a bad WARDROBE_* value fails now, naming the variable
    if model is not None:
        path = model
    else:
        choice = choose_model(settings.device)
        path = choice.path
        print(f"serving {path}: {choice.reason}", flush=True)
    check_model_file(path)  # a missing or broken model fails now, naming the file
    env = {**os.environ, "WARDROBE_MODEL": str(path.resolve())}
    Settings.from_env(env)
    command = [sys.executable, "-m", "bentoml", "serve", SERVICE, "--port", str(port),
               "--host", host]  # fmt: skip
    # Its own process group, so stop() can end the server's workers too, not only `bentoml serve`.
    return subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)


def wait_ready(process: subprocess.Popen, url: str, timeout_s: float = 180) -> None:
    """Poll `url`/readyz until it answers 200; RuntimeError if the server dies or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode} while starting")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the server was not ready after {timeout_s:.0f} s ({url}/readyz)")


def stop(process: subprocess.Popen, grace_s: float = 20) -> int:
    """Stop the server (SIGTERM, then SIGKILL after `grace_s`); return its exit status.

    When the server leads its own process group (as `start` makes it), whatever is
    left of the group afterwards (a worker still draining, or one that missed the
    signal) is killed too.
    """
    group = None
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(process.pid) == process.pid:
            group = process.pid
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
    returncode = process.wait()
    if group is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    return returncode


@contextlib.contextmanager
def _sigterm_as_exit():
    """Inside the block, SIGTERM raises SystemExit(143) instead of ending the process on the
    spot, so the `finally` that stops the server runs (Python's default skips it)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve(model: Path | None = None, port: int = 3000, host: str = "127.0.0.1") -> int:
    """Run the service in the foreground until it exits or Ctrl-C."""
    with _sigterm_as_exit():
        process = start(model, port, host)
        try:
            return process.wait()
        finally:
            stop(process)


def demo(port: int = 3000) -> int:
    """Start the service on the shipped model, print a curl line that classifies a sample."""
    host = "127.0.0.1"
    url = f"http://{host}:{port}"
    with _sigterm_as_exit():
        process = start(None, port, host)
        try:
            wait_ready(process, url)
            sample = os.path.relpath(SAMPLE) if SAMPLE.is_relative_to(Path.cwd()) else str(SAMPLE)
            print(f"\nwardrobe is serving on {url} (Ctrl-C to stop).\n")
            print(f"    Your wardrobe, in a browser:  {url}/")
            print(f"    The API explorer:             {url}/docs\n")
            print("Classify a sample image:\n")
            print(f"    curl -F images=@{shlex.quote(sample)} {url}/classify\n", flush=True)
            return process.wait()
        finally:
            stop(process)

"""`wardrobe serve` and `wardrobe demo`: start the BentoML service (`bentoml serve` underneath).

The server runs in its own process group, and whatever ends the command —
Ctrl-C, SIGTERM, an error — stops that whole group: no `bentoml serve` or
worker process outlives `wardrobe serve`/`demo` holding the port. Ctrl-C and
SIGTERM are how a person stops a server, so they end the command with status 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from contract.runtime import check_model_file
from service.model_choice import choose_model
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "service.service:Wardrobe"
SAMPLE = ROOT / "service" / "samples" / "sneaker.png"
"""Fashion-MNIST test image #9, a sneaker: what the demo's curl line classifies."""


class PortInUse(OSError):
    """Something already listens on the port the server was asked to use."""


class Stopped(Exception):
    """The person stopped the command (SIGTERM); like Ctrl-C, a normal end."""


def check_port_free(host: str, port: int, command: str) -> None:
    """PortInUse, naming a way out, when something listens on host:port. SO_REUSEADDR as
    uvicorn binds: a port left in TIME_WAIT is free for it, one with a listener is not."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            other = (
                "PORT={0} make demo, or wardrobe demo --port {0}" if command == "demo" else "wardrobe serve --port {0}"
            )
            raise PortInUse(f"port {port} on {host} is already in use; stop what holds it or pick another port: "
                            + other.format(port + 1)) from None  # fmt: skip


def start(model: Path | None, port: int, host: str, command: str = "serve") -> subprocess.Popen:
    """Check the settings, the port and the model here (one clear line if wrong), then start the server."""
    settings = Settings.from_env(os.environ)  # a bad WARDROBE_* value fails now, naming the variable
    check_port_free(host, port, command)
    if model is not None:
        path = model
    else:
        choice = choose_model(settings.device)
        path = choice.path
        print(f"model {path}: {choice.reason}", flush=True)
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


def served_model(url: str) -> str:
    """Which model the server at `url` serves and the test accuracy it records, from its /readyz
    (service/model_standing.py), with its warning when that is much worse than the shipped model's."""
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:
            ready = json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"(which model serves is unknown: {url}/readyz: {exc})"
    model, shipped = ready.get("model_test_accuracy"), ready.get("shipped_test_accuracy")
    figure = lambda a: "not recorded" if a is None else f"{a:.4f}"  # noqa: E731
    line = (f"Serving model {str(ready.get('model_sha256'))[:12]}: Fashion-MNIST test accuracy {figure(model)} "
            f"(the shipped model's: {figure(shipped)}).")  # fmt: skip
    return line + (f"\nWarning: {ready['warning']}." if ready.get("warning") else "")


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
def _stopped_by_signal():
    """Inside the block, SIGTERM raises Stopped instead of ending the process on the spot, so
    the `finally` that stops the server runs (Python's default skips it); Ctrl-C and SIGTERM
    then end the command with status 0 and one line."""
    in_main = threading.current_thread() is threading.main_thread()  # only it may set handlers

    def handler(signum, frame):
        raise Stopped

    previous = signal.signal(signal.SIGTERM, handler) if in_main else None
    try:
        yield
    except (KeyboardInterrupt, Stopped):
        print("\nwardrobe: stopped", flush=True)
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def serve(model: Path | None = None, port: int = 3000, host: str = "127.0.0.1") -> int:
    """Run the service in the foreground until it exits, Ctrl-C or SIGTERM (status 0)."""
    status = 0
    with _stopped_by_signal():
        process = start(model, port, host)
        try:
            status = process.wait()
        finally:
            stop(process)
    return status


def _activate_hint() -> str | None:
    """The line that puts this environment's `wardrobe` on PATH, unless it already is."""
    if os.environ.get("VIRTUAL_ENV") == sys.prefix or sys.prefix == sys.base_prefix:
        return None
    venv = Path(sys.prefix)
    shown = os.path.relpath(venv) if venv.is_relative_to(Path.cwd()) else str(venv)
    return f"source {shlex.quote(shown)}/bin/activate"


def demo(port: int = 3000) -> int:
    """Start the service on the shipped model, print a curl line that classifies a sample."""
    host = "127.0.0.1"
    url = f"http://{host}:{port}"
    status = 0
    with _stopped_by_signal():
        process = start(None, port, host, command="demo")
        try:
            wait_ready(process, url)
            sample = os.path.relpath(SAMPLE) if SAMPLE.is_relative_to(Path.cwd()) else str(SAMPLE)
            print(f"\nwardrobe is serving on {url} (Ctrl-C to stop).")
            print(f"{served_model(url)}\n")
            print(f"    Your wardrobe, in a browser:  {url}/")
            print(f"    The API explorer:             {url}/docs\n")
            print("Classify a sample image:\n")
            print(f"    curl -F images=@{shlex.quote(sample)} {url}/classify\n")
            hint = _activate_hint()
            if hint:
                print("The `wardrobe` command, in another shell (README.md, 'Quick start'):\n")
                print(f"    {hint}\n    wardrobe predict {shlex.quote(sample)}\n")
            sys.stdout.flush()
            status = process.wait()
        finally:
            stop(process)
    return status

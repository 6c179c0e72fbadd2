"""`wardrobe serve` and `wardrobe demo`: clear start-up errors, a demo whose curl line works,
and no server left behind when the command is stopped."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest

from contract.runtime import load_model
from service.serve import stop

ROOT = Path(__file__).resolve().parents[1]
WARDROBE = [sys.executable, "-m", "wardrobe"]


def _wardrobe(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*WARDROBE, *args], cwd=ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_serve_with_a_bad_setting_names_the_variable_and_does_not_start(tiny_model_path):
    result = _wardrobe("serve", "--model", str(tiny_model_path),
                       env={"WARDROBE_MAX_BATCH_SIZE": "lots"})  # fmt: skip
    assert result.returncode == 1
    assert "WARDROBE_MAX_BATCH_SIZE must be a whole number, got 'lots'" in result.stderr


def test_serve_with_a_missing_model_says_which_file(tmp_path):
    missing = tmp_path / "nowhere.onnx"
    result = _wardrobe("serve", "--model", str(missing))
    assert result.returncode == 1
    assert f"{missing}: model file not found" in result.stderr


@pytest.mark.slow
def test_demo_prints_the_page_and_a_curl_line_that_classifies_the_sample(tiny_model_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "WARDROBE_MODEL": str(tiny_model_path), "WARDROBE_WORKERS": "1"}
    # Ctrl-C as in a terminal, however the suite was started (a background job ignores SIGINT,
    # and Python then never turns it into KeyboardInterrupt).
    demo = subprocess.Popen(
        [*WARDROBE, "demo", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), start_new_session=True,
    )  # fmt: skip
    try:
        seen = []
        curl = next(line.strip() for line in demo.stdout if seen.append(line) or line.strip().startswith("curl "))
        [page] = [line.split()[-1] for line in seen if "in a browser" in line]
        assert page == f"http://127.0.0.1:{port}/"
        # Which model serves, with its recorded figure, and a warning: the tiny model is far below the shipped one.
        tiny = load_model(tiny_model_path, device="cpu").info
        [serving] = [line for line in seen if line.startswith("Serving model ")]
        assert serving.startswith(f"Serving model {tiny.sha256[:12]}: Fashion-MNIST test accuracy "
                                  f"{float(tiny.metadata['test_accuracy']):.4f} (the shipped model's: 0.")  # fmt: skip
        assert any(line.startswith(f"Warning: model {tiny.sha256[:12]} records") for line in seen), seen
        with urllib.request.urlopen(page, timeout=30) as response:
            assert response.status == 200 and b"<title>Wardrobe</title>" in response.read()
        answer = subprocess.run(shlex.split(curl) + ["-sS", "--fail"], cwd=ROOT,
                                capture_output=True, text=True, timeout=30)  # fmt: skip
        assert answer.returncode == 0, answer.stderr
        [prediction] = json.loads(answer.stdout)
        assert set(prediction) == {"label", "class_id", "confidence", "top_k", "unsure", "model_sha256"}
    finally:
        demo.send_signal(signal.SIGINT)  # Ctrl-C: how a person stops the demo, so not a failure
        try:
            assert demo.wait(timeout=30) == 0
        finally:
            stop(demo)  # the demo's whole group, should it still run


@pytest.mark.parametrize("command", ["demo", "serve"])
def test_a_busy_port_is_one_line_naming_another_port_and_nothing_claims_to_serve(command, tiny_model_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _wardrobe(command, "--port", str(port), env={"WARDROBE_MODEL": str(tiny_model_path)})
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"wardrobe {command}: error: port {port} on 127.0.0.1 is already in use")
    assert f"--port {port + 1}" in line and (command == "serve" or f"PORT={port + 1} make demo" in line)
    assert "serving" not in result.stdout


def _listening(port: int) -> bool:
    """Whether something accepts connections on the port (a bind test would also trip on the
    TIME_WAIT left by the readiness polls, which a restarted server's SO_REUSEADDR ignores)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return False
    return True


@pytest.mark.slow
def test_sigterm_to_demo_also_stops_its_server_and_frees_the_port(tiny_model_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "WARDROBE_MODEL": str(tiny_model_path), "WARDROBE_WORKERS": "1"}
    # Ctrl-C as in a terminal, however the suite was started (a background job ignores SIGINT,
    # and Python then never turns it into KeyboardInterrupt).
    demo = subprocess.Popen(
        [*WARDROBE, "demo", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), start_new_session=True,
    )  # fmt: skip
    server: list[psutil.Process] = []
    try:
        next(line for line in demo.stdout if line.strip().startswith("curl "))  # serving now
        server = psutil.Process(demo.pid).children(recursive=True)
        assert server, "wardrobe demo started no server process"
        assert _listening(port)

        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=60) == 0
        assert demo.stdout.read().strip().endswith("wardrobe: stopped")
        _, alive = psutil.wait_procs(server, timeout=10)
        assert not alive, f"left running after SIGTERM to wardrobe demo: {[p.cmdline() for p in alive]}"
        assert not _listening(port), f"port {port} still served after wardrobe demo stopped"
    finally:
        if demo.poll() is None:
            demo.kill()
        for process in server:
            if process.is_running():
                process.kill()

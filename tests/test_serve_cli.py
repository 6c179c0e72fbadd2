"""`wardrobe serve` and `wardrobe demo`: clear start-up errors, and a demo whose curl line works."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

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
def test_demo_prints_a_curl_line_that_classifies_the_sample(tiny_model_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "WARDROBE_MODEL": str(tiny_model_path), "WARDROBE_WORKERS": "1"}
    demo = subprocess.Popen(
        [*WARDROBE, "demo", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        curl = next(line.strip() for line in demo.stdout if line.strip().startswith("curl "))
        answer = subprocess.run(shlex.split(curl) + ["-sS", "--fail"], cwd=ROOT,
                                capture_output=True, text=True, timeout=30)  # fmt: skip
        assert answer.returncode == 0, answer.stderr
        [prediction] = json.loads(answer.stdout)
        assert set(prediction) == {"label", "class_id", "confidence", "top_k", "unsure"}
    finally:
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=30) == 130

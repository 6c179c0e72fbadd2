"""The Bento starts from its own packages: build it, install only its requirements, serve, classify.

`tests/test_deploy_bento.py` serves the Bento from the development venv, which hides a package the
Bento forgot (orjson and pillow-heif were, once). This builds the real Bento (offline) from the
checkout, creates a clean virtual environment from the Bento's own `env/python/requirements.txt`
(no development venv, no editable install), runs `bentoml serve` inside the Bento's `src/`, and
asks `/classify` and `/`. It installs about 80 packages, so it is its own target:
`make bento-smoke` (run by `.ci/run` after `make test`).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import httpx
import pytest
from conftest import free_port
from test_deploy_bento import OFFLINE

from service.serve import stop, wait_ready

pytestmark = pytest.mark.bento_smoke

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "service" / "samples" / "sneaker.png"
# The local package mirror serves onnxruntime-gpu but not the CUDA/cuDNN wheels of its extras; the
# image installs them, this CPU check does not need them.
GPU_EXTRAS = re.compile(r"^(onnxruntime-gpu)\[[^\]]*\]", re.MULTILINE)


def _clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment minus anything that points into the development checkout."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("WARDROBE_")}
    return {**env, **extra}


def test_the_built_bento_serves_from_a_venv_of_its_own_requirements(tmp_path):
    home = tmp_path / "bentoml-home"
    build = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "-f", "deploy/bentofile.yaml", "-o", "tag", "."],
        cwd=ROOT, env={**os.environ, **OFFLINE, "BENTOML_HOME": str(home)},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    [tag] = re.findall(r"__tag__:(\S+)", build.stdout)
    name, version = tag.split(":")
    bento = home / "bentos" / name / version

    requirements = tmp_path / "requirements.txt"
    requirements.write_text(GPU_EXTRAS.sub(r"\1", (bento / "env" / "python" / "requirements.txt").read_text()))
    clean = tmp_path / "venv"
    venv.create(clean, with_pip=True)
    install = subprocess.run(
        [str(clean / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(requirements)],
        env=_clean_environment(), capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    # Nothing of the checkout is importable from the clean venv: only the Bento's src/ can serve.
    probe = subprocess.run([str(clean / "bin" / "python"), "-c", "import wardrobe"], cwd=tmp_path,
                           env=_clean_environment(), capture_output=True)  # fmt: skip
    assert probe.returncode != 0

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(clean / "bin" / "bentoml"), "serve", ".", "--port", str(port), "--host", "127.0.0.1"],
            cwd=bento / "src", env=_clean_environment(WARDROBE_WORKERS="1", BENTOML_DO_NOT_TRACK="true"),
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            wait_ready(process, url, timeout_s=180)
            classified = httpx.post(f"{url}/classify", files=[("images", ("sneaker.png", SAMPLE.read_bytes()))],
                                    timeout=60)  # fmt: skip
            assert classified.status_code == 200, classified.text
            assert classified.json()[0]["label"] == "Sneaker"
            page = httpx.get(f"{url}/", timeout=30)
            assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        finally:
            stop(process)
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and "ModuleNotFoundError" not in text, text[-3000:]

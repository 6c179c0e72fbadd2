"""`bentoml build -f deploy/bentofile.yaml` offline, then `bentoml serve <tag>` classifies an image.

The build runs on a copy of the checkout (tracked and untracked-but-not-ignored
files, plus the kind of clutter a working checkout has) with the tiny model as
models/cnn.onnx, and a temporary BENTOML_HOME, so nothing lands in ~/bentoml.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import free_port
from packaging.requirements import Requirement

from service.serve import stop, wait_ready

ROOT = Path(__file__).resolve().parents[1]
BENTOFILE = ROOT / "deploy" / "bentofile.yaml"
BENTO_REQUIREMENTS = ROOT / "deploy" / "bento-requirements.txt"
K8S = ROOT / "deploy" / "k8s"
SAMPLE = ROOT / "service" / "samples" / "sneaker.png"
DEAD_PROXY = "http://127.0.0.1:9"  # the discard port: any download attempt fails at once
OFFLINE = {
    "BENTOML_DO_NOT_TRACK": "true",  # no usage telemetry
    "PIP_NO_INDEX": "1",  # BentoML pip-installs uv when it is missing: make that fail, not fetch
    "UV_OFFLINE": "1",
    **{
        k: DEAD_PROXY for k in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
    },  # fmt: skip
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}
CLUTTER = [".venv/lib/site.py", "runs/cnn/last.pt", "reports/cnn/index.html", ".git/HEAD",
           "service/__pycache__/service.cpython-311.pyc"]  # fmt: skip


def _environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDROBE_")}
    venv_bin = str(Path(sys.executable).parent)
    return {**env, **OFFLINE, "BENTOML_HOME": str(home), "PATH": f"{venv_bin}:{env['PATH']}"}


def _checkout_copy(destination: Path, model: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    for relative in filter(None, listed.split("\0")):
        if (ROOT / relative).is_file():
            (destination / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / relative, destination / relative)
    for relative in CLUTTER:
        (destination / relative).parent.mkdir(parents=True, exist_ok=True)
        (destination / relative).write_text("not for the Bento\n")
    (destination / "models").mkdir(exist_ok=True)
    shutil.copy2(model, destination / "models" / "cnn.onnx")
    return destination


@pytest.fixture(scope="module")
def bento(tiny_model_path, tmp_path_factory) -> tuple[str, Path, dict[str, str]]:
    """(tag, directory in the store, environment) of a Bento built offline from a checkout copy."""
    context = _checkout_copy(tmp_path_factory.mktemp("checkout"), tiny_model_path)
    env = _environment(tmp_path_factory.mktemp("bentoml-home"))
    build = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "-f", "deploy/bentofile.yaml", "-o", "tag", "."],
        cwd=context, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    [tag] = re.findall(r"__tag__:(\S+)", build.stdout)
    name, version = tag.split(":")
    return tag, Path(env["BENTOML_HOME"]) / "bentos" / name / version, env


def test_the_bento_holds_the_service_and_the_model_and_nothing_else(bento):
    _, store, _ = bento
    src = store / "src"
    files = {p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()}
    packages = [ROOT / "contract", ROOT / "service"]
    service = {p.relative_to(ROOT).as_posix() for package in packages for p in package.rglob("*.py")}
    samples = {p.relative_to(ROOT).as_posix() for p in (ROOT / "service/samples").glob("*.png")}
    page = {p.relative_to(ROOT).as_posix() for p in (ROOT / "service/static").glob("*")}
    migration_template = {"contract/store/migrations/script.py.mako"}
    served_models = {"models/cnn.onnx", "models/cnn-int8.onnx"}
    assert files == service | samples | page | migration_template | served_models | {"bentofile.yaml"}


def test_the_bento_installs_its_package_list_and_the_running_bentoml(bento):
    _, store, _ = bento
    listed = [line for line in BENTO_REQUIREMENTS.read_text().splitlines() if line and not line.startswith("#")]
    written = (store / "env" / "python" / "requirements.txt").read_text().splitlines()
    assert set(listed) <= set(written)
    assert f"bentoml=={importlib.metadata.version('bentoml')}" in written


def test_the_bento_image_installs_the_cuda_build_of_onnxruntime(bento):
    _, store, _ = bento
    requirements = (store / "env" / "python" / "requirements.txt").read_text()
    onnxruntime = next(Requirement(r) for r in requirements.splitlines() if r.startswith("onnxruntime"))
    assert onnxruntime.name == "onnxruntime-gpu" and {"cuda", "cudnn"} <= onnxruntime.extras
    assert (store / "env" / "docker" / "Dockerfile").is_file()


def _probe_paths() -> set[str]:
    paths = set()
    for manifest in K8S.glob("*.yaml"):
        for doc in filter(None, yaml.safe_load_all(manifest.read_text())):
            if doc["kind"] != "Deployment":
                continue
            for container in doc["spec"]["template"]["spec"]["containers"]:
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    if probe in container:
                        paths.add(container[probe]["httpGet"]["path"])
    return paths


def test_the_built_bento_serves_its_own_model(bento, tmp_path):
    tag, store, env = bento
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        # No WARDROBE_MODEL: the Bento must carry the model it serves. Started outside the
        # checkout so nothing can be imported from it.
        process = subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", tag, "--port", str(port)],
            cwd=tmp_path, env={**env, "WARDROBE_WORKERS": "1", "WARDROBE_DB": str(tmp_path / "w.db")}, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            wait_ready(process, url, timeout_s=120)
            response = httpx.post(
                f"{url}/classify", files=[("images", ("sneaker.png", SAMPLE.read_bytes()))],
                timeout=30,
            )  # fmt: skip
            assert response.status_code == 200, response.text
            [answer] = response.json()
            assert set(answer) == {"label", "class_id", "confidence", "top_k", "unsure", "model_sha256"}
            for path in _probe_paths():  # what the Kubernetes probes ask
                assert httpx.get(f"{url}{path}", timeout=10).status_code == 200, path
        finally:
            stop(process)
    text = log.read_text(errors="replace")
    # on CPU the Bento serves the INT8 variant it carries (as accurate as FP32: service.model_choice.choose_model),
    # and an empty registry makes it the champion
    int8 = store / "src" / "models" / "cnn-int8.onnx"
    assert f"serving {int8}: " in text, text[-3000:]
    assert f"wardrobe ready: model {hashlib.sha256(int8.read_bytes()).hexdigest()} on " in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]

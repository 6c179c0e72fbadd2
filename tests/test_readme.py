"""The README's runnable examples, run as printed against a real server.

The quick start's ```bash and ```python blocks run in order, in the set-up section's
`source .venv/bin/activate` shell, against `wardrobe demo` (what `make demo` runs) on a free
port with a token set, so the README's `Authorization` headers are exercised. `curl` fails on
an HTTP error, and a `print(...)  # expected` line must print what its comment says. A README
example that breaks fails here.
"""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import REPO, free_port

pytestmark = pytest.mark.slow

README = REPO / "README.md"
TOKEN = "readme-test-token"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def section(title: str) -> str:
    """The README text under `## title`, up to the next `## ` heading."""
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def runnable_blocks(title: str) -> list[tuple[str, str]]:
    """(language, code) of the section's ```bash and ```python blocks, in order."""
    return [(lang, code) for lang, code in FENCE.findall(section(title)) if lang in ("bash", "python")]


def activate_line() -> str:
    """The set-up section's one line that puts `wardrobe` on PATH."""
    [line] = [ln.strip() for ln in section("Set up: two commands").splitlines() if ln.strip().startswith("source ")]
    return line


def expected_prints(code: str) -> list[str]:
    """For each `print(...)  # text` line, the text the README says it prints."""
    return [ln.split("#", 1)[1].strip() for ln in code.splitlines() if ln.startswith("print(") and "  # " in ln]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`wardrobe demo` on a free port with a token and a database of its own; its base URL."""
    port = free_port()
    home = tmp_path_factory.mktemp("readme")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDROBE_")}
    env |= {"WARDROBE_TOKEN": TOKEN, "WARDROBE_DB": str(home / "wardrobe.db"), "WARDROBE_WORKERS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "wardrobe", "demo", "--port", str(port)], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        seen = []
        for line in process.stdout:  # the demo prints its curl line once the server answers
            seen.append(line)
            if line.strip().startswith("curl "):
                break
        else:
            pytest.fail(f"wardrobe demo ended before serving: {''.join(seen)[-2000:]}")
        yield f"http://127.0.0.1:{port}", {**env, "HOME": str(home)}
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, "wardrobe demo did not end with status 0 on SIGTERM"


def run_bash(code: str, url: str, env: dict) -> str:
    """Run a README shell block as printed (port swapped for the test's), failing on any error."""
    prelude = f'{activate_line()}\ncurl() {{ command curl -sS --fail-with-body "$@"; }}\n'
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", prelude + code.replace("127.0.0.1:3000", url[7:])],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, (
        f"README block failed:\n{code}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    return result.stdout


def test_the_quick_start_runs_as_printed(demo):
    url, env = demo
    blocks = runnable_blocks("Quick start")
    assert [lang for lang, _ in blocks] == ["bash", "python"], "the quick start's runnable blocks changed: update me"
    for lang, code in blocks:
        if lang == "bash":
            out = run_bash(code, url, env)
            assert '"label":"Sneaker"' in out.replace(" ", "") and '"label":"Trouser"' in out.replace(" ", "")
            assert "service/samples/sneaker.png: Sneaker" in out and "service/samples/trouser.png: Trouser" in out
            assert '"shelves"' in out  # the wardrobe's shelves, as the last curl asks for them
        else:
            ast.parse(code)
            result = subprocess.run([sys.executable, "-c", code.replace("127.0.0.1:3000", url[7:])], cwd=REPO,
                                    env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
            assert result.returncode == 0, result.stderr[-3000:]
            assert result.stdout.splitlines() == expected_prints(code)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        stored = [i for i in client.get("/wardrobe/items").json()["items"] if i["filename"] == "trouser.png"]
    assert [item["label"] for item in stored] == ["Trouser"], "the quick start's upload did not reach the wardrobe"


def test_the_walk_through_sample_photos_arrive_labelled(demo, tmp_path):
    url, env = demo
    [line] = [ln.strip() for ln in section("Learning from your wardrobe").splitlines()
              if ln.strip().startswith("python -m benchmarks.unseen_style")]  # fmt: skip
    assert "--n 150" in line, "the walk-through should make the ~150 corrections the canary needs"
    quick = line.replace("--n 150", "--n 20").replace("photos/", f"{tmp_path}/photos/")  # the same path, smaller
    out = run_bash(quick, url, env)
    assert "20 garments in the wardrobe" in out and "wardrobe train --config configs/finetune.toml" in out
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        items = client.get("/wardrobe/items", params={"limit": 100}).json()["items"]
    truth = {path.name: path.parent.name for path in Path(tmp_path / "photos").rglob("*.jpg")}
    labelled = {item["filename"]: item["corrected_label"] for item in items if item["filename"] in truth}
    assert len(labelled) == 20
    assert all(label.replace("/", "_") == truth[name] for name, label in labelled.items())


def test_every_results_file_records_its_command_and_commit():
    import json

    for path in sorted((REPO / "benchmarks" / "results").glob("*.json")):
        results = json.loads(path.read_text())
        assert isinstance(results, dict) and {"command", "commit"} <= results.keys(), f"{path.name}: no command/commit"
        assert re.fullmatch(r"[0-9a-f]{7,40}(-dirty)?", results["commit"]), f"{path.name}: commit {results['commit']!r}"
        assert results["command"] or results.get("command_note"), f"{path.name}: no command and no reason why"


def test_the_api_in_brief_names_every_route_the_service_mounts():
    """Each mounted route's last path segment (a parameter may be named differently) is in the README's list."""
    from service.openapi import UNDOCUMENTED, route_paths
    from service.service import Wardrobe

    listed = section("HTTP API in brief")
    gone = {"/admin/reload"}  # answers 410 only: model files come from uploads or the registry
    routes = {path for app, prefix, _ in Wardrobe.mount_apps for path in route_paths(app, prefix.rstrip("/"))}
    assert "/wardrobe/thumbnails" in routes
    for path in sorted(routes - UNDOCUMENTED - gone):
        segment = path.rpartition("/")[2]
        tail = "/" + r"\{\w+\}".join(re.escape(part) for part in re.split(r"\{\w+\}", segment))
        assert re.search(tail + r"(?![\w/])", listed), f"README's 'HTTP API in brief' does not name {path}"

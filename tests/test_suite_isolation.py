"""The test suite leaves the person's home and data home as it found them (issue 31).

A slice of the suite that starts servers the way the rest does (a module-scoped server without
WARDROBE_DB, the one that once crowned a 30 %-accurate model in the person's own registry; the
page's server; `wardrobe` as a subprocess; the registry and its CLI) runs in a pytest of its own
whose HOME and XDG_DATA_HOME are a directory watched here: every file in it is the same afterwards,
and nothing new appears.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from training import fashion_mnist

REPO = Path(__file__).resolve().parents[1]
SLICE = [
    "tests/test_service_timeout.py",  # a module-scoped server, no WARDROBE_DB: the one that wrote the champion
    "tests/test_registry.py::test_cli_publishes_lists_promotes_and_rolls_back[sqlite]",
    "tests/test_web_security.py::test_pages_and_static_files_carry_the_policy_and_every_answer_nosniff",
    "tests/test_serve_cli.py::test_serve_with_a_bad_setting_names_the_variable_and_does_not_start",
]


def _snapshot(root: Path) -> dict[str, str]:
    """Every path under `root`: a directory as "dir", a file as its SHA-256."""
    return {
        str(path.relative_to(root)): "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
    }


def test_the_suite_leaves_the_persons_home_and_data_home_as_it_found_them(tmp_path):
    home = tmp_path / "home"
    data_home = home / ".local" / "share"
    (data_home / "wardrobe").mkdir(parents=True)
    (data_home / "wardrobe" / "wardrobe.db").write_bytes(b"the person's own registry: never opened by a test")
    (home / ".bashrc").write_text("# the person's\n")
    before = _snapshot(home)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("WARDROBE_", "PYTEST_", "XDG_"))}
    environment |= {
        "HOME": str(home), "XDG_DATA_HOME": str(data_home),
        # The dataset, wherever this session found it (the cache may be the person's).
        "WARDROBE_DATA_DIR": str(fashion_mnist.locate(download=False)), "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }  # fmt: skip
    basetemp = tmp_path / "basetemp"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
         f"--basetemp={basetemp}", *SLICE],
        cwd=REPO, env=environment, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert f"{len(SLICE)} passed" in run.stdout, run.stdout[-2000:]
    assert _snapshot(home) == before
    # The server without WARDROBE_DB did make a default database: in its own data home, not the person's.
    made = list(basetemp.rglob("data-home-*/wardrobe/wardrobe.db"))
    assert made, f"no server made its default database under {basetemp}"

"""Write the Bento's package list from the lock: what the served code imports, at the locked versions.

    python deploy/bento_requirements.py           # rewrite deploy/bento-requirements.txt
    python deploy/bento_requirements.py --check   # exit 1 when the file is out of date

The served code is `service/` and `contract/` (the Bento holds nothing else). Its third-party
imports are read from the source (AST), mapped to distributions with
`importlib.metadata.packages_distributions()`, and closed over their own requirements as the lock
records them (pip-compile's `# via` lines), so the container installs the same versions the tests
ran with, transitive ones included. `make lock` runs this after compiling the lock; a test fails
when the file and the lock disagree. BentoML adds its own `bentoml==<version>` line at build time.
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
OUT = ROOT / "deploy" / "bento-requirements.txt"
SERVED = ("service", "contract")

# Loaded by name at run time, never imported: SQLAlchemy opens `postgresql+psycopg` URLs with
# psycopg 3 (contract/store/database.py), whose C build is psycopg-binary; uvicorn picks uvloop and
# httptools when they are installed (measured faster, see pyproject.toml).
LOADED_BY_NAME = ("psycopg", "psycopg-binary", "uvloop", "httptools")
# The image serves on GPU too: onnxruntime-gpu's extras bring CUDA 13 and cuDNN 9 from PyPI. Those
# wheels are not in the lock (the development venv gets CUDA from torch's wheels).
EXTRAS = {"onnxruntime-gpu": "[cuda,cudnn]"}
# Written by BentoML itself at the running version, which the lock pins.
ADDED_BY_BENTOML = ("bentoml",)

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)")
_VIA = re.compile(r"^\s+#\s+(?:via\s+)?([A-Za-z0-9][A-Za-z0-9._-]*)\s*$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path = LOCK) -> tuple[dict[str, str], dict[str, set[str]]]:
    """(version by distribution, the distributions each one requires) as pip-compile wrote them."""
    versions: dict[str, str] = {}
    required_by: dict[str, set[str]] = {}
    current = None
    for line in path.read_text().splitlines():
        if pin := _PIN.match(line):
            current = canonical(pin[1])
            versions[current] = pin[2]
            required_by[current] = set()
        elif current and (via := _VIA.match(line)) and via[1] not in ("via",):
            required_by[current].add(canonical(via[1]))
    requires: dict[str, set[str]] = {name: set() for name in versions}
    for child, parents in required_by.items():
        for parent in parents & versions.keys():
            requires[parent].add(child)
    return versions, requires


def third_party_imports(packages: tuple[str, ...] = SERVED) -> set[str]:
    """Top-level module names imported by the served code, minus the standard library and itself."""
    modules: set[str] = set()
    for package in packages:
        for source in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
                if isinstance(node, ast.Import):
                    modules.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules.add(node.module.split(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names and m not in SERVED and m != "__future__"}


def imported_distributions(modules: set[str]) -> set[str]:
    """The installed distributions that provide these modules; a module nobody provides is an error."""
    providers = importlib.metadata.packages_distributions()
    missing = sorted(m for m in modules if m not in providers)
    if missing:
        raise SystemExit(f"bento_requirements: no installed distribution provides {', '.join(missing)}")
    return {canonical(d) for m in modules for d in providers[m]}


def closure(roots: set[str], requires: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(requires.get(name, ()))
    return seen


def bento_requirements(lock: Path = LOCK) -> str:
    versions, requires = read_lock(lock)
    direct = imported_distributions(third_party_imports()) | set(LOADED_BY_NAME)
    unlocked = sorted(direct - versions.keys())
    if unlocked:
        raise SystemExit(
            f"bento_requirements: {', '.join(unlocked)} imported by the served code but not in {lock.name}"
        )
    names = sorted(closure(direct, requires) - set(ADDED_BY_BENTOML))
    lines = [f"{name}{EXTRAS.get(name, '')}=={versions[name]}" for name in names]
    header = (
        "# The Bento's packages (deploy/bentofile.yaml), generated from requirements.lock by\n"
        "# `python deploy/bento_requirements.py` (run by `make lock`); do not edit by hand.\n"
        f"# Imported or loaded by name by service/ and contract/: {', '.join(sorted(direct))};\n"
        "# the rest is what they require.\n"
    )
    return header + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is out of date")
    args = parser.parse_args(argv)
    wanted = bento_requirements()
    if args.check:
        if not OUT.exists() or OUT.read_text() != wanted:
            print(f"{OUT.relative_to(ROOT)} is out of date: run `make lock`", file=sys.stderr)
            return 1
        return 0
    temporary = OUT.with_suffix(".tmp")
    temporary.write_text(wanted)
    temporary.replace(OUT)
    count = sum(1 for line in wanted.splitlines() if not line.startswith("#"))
    print(f"wrote {OUT.relative_to(ROOT)} ({count} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

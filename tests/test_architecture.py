"""The floor plan of docs/architecture.md, checked by reading every import (a small AST pass).

Arrows only point down: a package imports its own floor or a lower one, and no
module of ours imports itself back through others. Imports inside functions
count too: a lazy import is still an arrow.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

ALLOWED = {
    "contract": {"contract"},
    # three packages side by side on the contract, none importing another: the service (no PyTorch),
    # training, and the photo simulators (numpy and Pillow, read back through the contract's preprocessing)
    "service": {"contract", "service"},
    "training": {"contract", "training"},
    "photo_sim": {"contract", "photo_sim"},
    "report": {"contract", "training", "photo_sim", "report"},
    "wardrobe": {"contract", "service", "training", "photo_sim", "report", "wardrobe"},
    "benchmarks": {"contract", "service", "training", "photo_sim", "report", "wardrobe", "benchmarks"},
    # build scripts (the Bento's package list): they read the source, they import none of it
    "deploy": set(),
}
"""Which of our packages each package may import (docs/architecture.md)."""
OURS = set(ALLOWED)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for package in sorted(OURS) for path in sorted((REPO / package).rglob("*.py"))}


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The longest prefix of a dotted name that is one of our modules, or None if not ours."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in MODULES:
            return candidate
    return None


def _imports(module: str, path: Path) -> set[tuple[str, int]]:
    """(our module imported, line) for every import statement in the file, wherever it stands."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from contract import metadata` imports contract.metadata when that is a module
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            if (target := _resolve(name)) is not None and target != module:
                found.add((target, node.lineno))
    return found


def _graph() -> dict[str, set[str]]:
    graph = {}
    for module, path in MODULES.items():
        targets = {target for target, _ in _imports(module, path)}
        # `from contract import metadata` names both the package and the submodule; keep the
        # submodule only, so a package's __init__ does not look like a dependency of everything.
        graph[module] = {t for t in targets if not any(o.startswith(t + ".") for o in targets)}
    return graph


def test_the_floor_plan_has_a_rule_for_every_package():
    with_code = {
        p.name for p in REPO.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name != "tests" and any(p.rglob("*.py"))
    }  # fmt: skip
    assert with_code == set(ALLOWED), "a new top-level package needs its floor in ALLOWED and docs/architecture.md"
    assert len(MODULES) > 30, "the import reader found too few modules; is REPO right?"
    # the reader itself sees a known arrow, so an empty result cannot pass silently
    assert "contract.runtime" in _graph()["service.service"]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_only_point_down(package):
    upward = []
    for module, path in MODULES.items():
        if module.split(".")[0] != package:
            continue
        for target, line in sorted(_imports(module, path)):
            if target.split(".")[0] not in ALLOWED[package]:
                upward.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert not upward, f"{package}/ may import only {sorted(ALLOWED[package])} (docs/architecture.md):\n" + "\n".join(
        upward
    )


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_no_import_cycles_between_our_modules():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


PAGE = REPO / "service" / "static"
PAGE_IMPORT = re.compile(r'^import (?:[^"\n]+ from )?"([^"]+)";?$', re.MULTILINE)


def test_the_page_is_short_modules_that_import_each_other_from_static():
    """One concern per file (STYLE.md, 15): each ≤ 250 lines, imports only `./x.js` beside it, no cycle."""
    modules = {path.name: path.read_text() for path in PAGE.glob("*.js") if path.name != "docs.js"}
    assert {"wardrobe.js", "api.js", "uploads.js", "shelves.js", "learning.js"} <= set(modules)
    assert {name: text.count("\n") for name, text in modules.items() if text.count("\n") > 250} == {}
    graph = {}
    for name, text in modules.items():
        targets = PAGE_IMPORT.findall(text)
        assert all(t.startswith("./") and t[2:] in modules for t in targets), (name, targets)  # served from /static
        graph[name] = {t[2:] for t in targets}
    assert _cycles(graph) == []
    html = (PAGE / "index.html").read_text()
    assert '<script type="module" src="/static/wardrobe.js">' in html
    # Preloaded together, so opening the page is not one round trip per level of imports.
    preloaded = set(re.findall(r'<link rel="modulepreload" href="/static/([^"]+)">', html))
    assert preloaded == set(modules) - {"wardrobe.js"}

"""requirements.lock: generated from pyproject.toml, installed exactly, and the source of the Bento's packages."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _bento_requirements():
    spec = importlib.util.spec_from_file_location("bento_requirements", ROOT / "deploy" / "bento_requirements.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENTO = _bento_requirements()
LOCKED, _ = BENTO.read_lock(LOCK)


def _declared() -> list[Requirement]:
    """What pyproject.toml asks for that applies here: the dependencies and the dev extra."""
    project = PYPROJECT["project"]
    wanted = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    return [r for r in wanted if r.marker is None or r.marker.evaluate()]


@pytest.mark.parametrize("requirement", _declared(), ids=str)
def test_every_declared_requirement_is_locked_inside_its_range(requirement):
    name = canonicalize_name(requirement.name)
    assert name in LOCKED, f"{requirement} is in pyproject.toml but not in requirements.lock: run `make lock`"
    assert requirement.specifier.contains(LOCKED[name], prereleases=True), (
        f"requirements.lock pins {name}=={LOCKED[name]}, outside pyproject.toml's {requirement}: run `make lock`"
    )


def test_the_lock_holds_no_direct_requirement_that_pyproject_dropped():
    declared = {canonicalize_name(r.name) for r in _declared()}
    direct, name = set(), None
    for line in LOCK.read_text().splitlines():
        if pin := re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", line):
            name = canonicalize_name(pin[1])
        elif name and "wardrobe (pyproject.toml)" in line:
            direct.add(name)
    assert direct - declared == set(), "requirements.lock is older than pyproject.toml: run `make lock`"


def test_the_environment_holds_exactly_the_locked_versions():
    installed = {
        canonicalize_name(d.metadata["Name"]): d.version
        for d in importlib.metadata.distributions()
        if canonicalize_name(d.metadata["Name"]) != "wardrobe"
    }
    unlocked = {name: v for name, v in installed.items() if LOCKED.get(name) != v}
    missing = {name: v for name, v in LOCKED.items() if installed.get(name) != v}
    assert not unlocked and not missing, (
        f"the venv differs from requirements.lock (run `make install`): installed {unlocked}, locked {missing}"
    )


@pytest.mark.parametrize(
    ("name", "vulnerable"),
    [("torch", "2.5.1"), ("starlette", "0.49.0"), ("python-multipart", "0.0.17"), ("bentoml", "1.4.2")],
)
def test_library_users_cannot_get_a_release_known_to_be_vulnerable(name, vulnerable):
    [requirement] = [r for r in _declared() if canonicalize_name(r.name) == name]
    assert not requirement.specifier.contains(Version(vulnerable)), requirement


def test_the_bento_package_list_is_what_the_lock_and_the_served_imports_give():
    assert (ROOT / "deploy" / "bento-requirements.txt").read_text() == BENTO.bento_requirements(LOCK), (
        "deploy/bento-requirements.txt is out of date: run `make lock`"
    )


def test_every_third_party_import_of_the_served_code_is_in_the_bento():
    listed = {
        canonicalize_name(Requirement(line).name)
        for line in (ROOT / "deploy" / "bento-requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    } | {"bentoml"}  # BentoML writes its own line at build time
    providers = importlib.metadata.packages_distributions()
    for module in BENTO.third_party_imports():
        assert {canonicalize_name(d) for d in providers[module]} & listed, f"{module} is imported but not in the Bento"


def test_the_import_reader_sees_imports_inside_functions(tmp_path, monkeypatch):
    package = tmp_path / "service"
    package.mkdir()
    (package / "late.py").write_text(
        "def f():\n    import orjson\n    from yaml import safe_load\n    from . import x\n"
    )
    monkeypatch.setattr(BENTO, "ROOT", tmp_path)
    assert BENTO.third_party_imports(("service",)) == {"orjson", "yaml"}

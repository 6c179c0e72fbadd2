"""Shared fixtures: the real dataset and a small model exported by our real exporter."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from wardrobe_server import Server, free_port, running_server

from training import fashion_mnist
from training.checkpoint import save_checkpoint
from training.config import load_config
from training.models import build_model
from training.wardrobe_data import WardrobeItems

REPO = Path(__file__).resolve().parents[1]
__all__ = ["free_port"]  # tests import it from here
SHARED_SETTINGS = {
    "WARDROBE_WORKERS": "1",
    "WARDROBE_MAX_FILES": "8",
    "WARDROBE_MAX_FILE_BYTES": "200000",
    "WARDROBE_MAX_REQUEST_BYTES": "1000000",
    "WARDROBE_MAX_PIXELS": "10000",
    "WARDROBE_QUEUE_BOUND": "6",
    # A wide batching window makes "arrive together" and "queue is full" deterministic.
    "WARDROBE_MAX_LATENCY_MS": "100",
    # A Content-Length longer than the body ends in a 408 this soon (tests/test_upload_fuzz.py).
    "WARDROBE_BODY_IDLE_S": "2",
}
"""The shared server's settings: small limits, so the tests can cross them cheaply."""

TINY_CNN = [
    'name="tiny"', 'model.arch="cnn"', "model.channels=[8,16]", "model.convs_per_stage=1",
    "tta_flip=true",
]  # fmt: skip


SESSION_HOME_VARIABLES = ("HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "BENTOML_HOME")
"""What pytest_configure points at the session's own directory (XDG_CACHE_HOME stays the person's)."""
_saved_environment: dict[str, str | None] = {}
_SESSION_HOME = pytest.StashKey[Path]()


def pytest_configure(config):
    """Before any fixture of any scope, server or subprocess: HOME, the XDG data, config and state homes
    and BENTOML_HOME point at a directory of this session's own, so nothing the suite starts writes to
    the person's (a server started without WARDROBE_DB makes its database under the data home: issue 31).
    The cache home stays the person's (made explicit, as HOME moves): the dataset may be cached there
    (training/fashion_mnist.py), and only caches go there. Git keeps the person's global config.
    Set here, not in a fixture: module- and session-scoped fixtures start before function-scoped ones."""
    home = Path(tempfile.mkdtemp(prefix="wardrobe-tests-home-"))
    config.stash[_SESSION_HOME] = home
    real_home = Path.home()
    pinned = {"XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME") or str(real_home / ".cache")}
    if "GIT_CONFIG_GLOBAL" not in os.environ and (real_home / ".gitconfig").is_file():
        pinned["GIT_CONFIG_GLOBAL"] = str(real_home / ".gitconfig")
    moved = {name: home / name.lower() for name in SESSION_HOME_VARIABLES}
    for directory in moved.values():
        directory.mkdir()
    for name, value in {**pinned, **moved}.items():
        _saved_environment.setdefault(name, os.environ.get(name))
        os.environ[name] = str(value)


def pytest_unconfigure(config):
    for name, value in _saved_environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _saved_environment.clear()
    if home := config.stash.get(_SESSION_HOME, None):
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(autouse=True)
def own_data_home(tmp_path_factory):
    """Servers started without WARDROBE_DB use the default database under the user's data directory, and
    register their model there (the model registry): point that directory at the test's own, so no test
    reads a champion another test left (a promotion elsewhere in the session), and none leaves one for the
    person running the tests."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("data-home")))
        yield


@pytest.fixture(scope="session")
def fmnist() -> fashion_mnist.FashionMNIST:
    return fashion_mnist.load(download=False)


def tiny_checkpoint(path: Path, steps: int = 30, seed: int = 0) -> Path:
    """A small CNN trained for a few steps on real images, so its predictions are not constant."""
    cfg = load_config(None, TINY_CNN)
    torch.manual_seed(seed)
    model = build_model(cfg.model)
    data = fashion_mnist.load(download=False)
    x = torch.from_numpy(data.train_images[:2048].copy()).float().div_(255)[:, None]
    y = torch.from_numpy(data.train_labels[:2048].copy())
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for step in range(steps):
        i = (step * 128) % 2048
        loss = torch.nn.functional.cross_entropy(model(x[i : i + 128]), y[i : i + 128])
        opt.zero_grad()
        loss.backward()
        opt.step()
    state = {"model": model.state_dict(), "config": dataclasses.asdict(cfg), "epoch": 1}
    save_checkpoint(state, path)
    return path


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    """A contract-compliant ONNX file written by `training.export.export` (parity-checked)."""
    from training.export import export

    directory = tmp_path_factory.mktemp("tiny-model")
    ckpt = tiny_checkpoint(directory / "tiny.pt")
    return export(ckpt, directory / "tiny.onnx").path


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server of our own for the session (tests/pg_cluster.py)."""
    from pg_cluster import Cluster

    cluster = Cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (Debian's, through Playwright), one per module of page tests. Not one per
    session: while Playwright's sync API is open, its event loop counts as running in this thread,
    and a later module's asyncio.run() would fail."""
    from benchmarks.browser import chromium

    with chromium() as launched:
        yield launched


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path) -> str:
    """A fresh, empty wardrobe database setting (WARDROBE_DB), once per backend."""
    if request.param == "sqlite":
        return str(tmp_path / "wardrobe.db")
    cluster = request.getfixturevalue("postgres")
    return cluster.create_database(f"w{uuid.uuid4().hex[:12]}")


def make_items(fmnist, per_class: int = 4, person: int | None = None) -> WardrobeItems:
    """Real test-set crops, `per_class` of each class; the first `person` of each are person-labelled."""
    idx = np.concatenate([np.nonzero(fmnist.test_labels == c)[0][:per_class] for c in range(10)])
    n = len(idx)
    person = per_class if person is None else person
    sources = tuple("person" if k % per_class < person else "model" for k in range(n))
    return WardrobeItems(
        ids=tuple(int(i) + 1 for i in idx),
        images=fmnist.test_images[idx],
        labels=fmnist.test_labels[idx].astype(np.int64),
        label_source=sources,
        predicted=fmnist.test_labels[idx].astype(np.int64),
    )


@pytest.fixture(scope="session")
def shared_server(tiny_model_path, tmp_path_factory) -> Server:
    """One real server (`bentoml serve`, the tiny model, SHARED_SETTINGS) for every test that needs
    no settings of its own; tests that do start theirs with `running_server`."""
    directory = tmp_path_factory.mktemp("shared-server")
    with running_server(directory / "server.log", model=tiny_model_path, WARDROBE_DB=str(directory / "w.db"),
                        **SHARED_SETTINGS) as server:  # fmt: skip
        yield server


LONGEST_FIRST = ("test_wardrobe_loop.py", "test_crash_restart.py")
"""Files whose tests take minutes: run first, so that under pytest-xdist (make test) one worker is
busy with them while the other takes the rest, instead of one finishing them alone at the end."""


def pytest_collection_modifyitems(items):
    first = {name: rank for rank, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: first.get(item.path.name, len(first)))  # stable: the rest keep their order

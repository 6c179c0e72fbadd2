"""Taking a model out of the registry: `wardrobe models export SHA256 --out FILE`, `wardrobe report
--compare champion|SHA256`, and the page's download (GET /wardrobe/models/{sha256}.onnx).

A reference is "champion" (the model every worker serves) or a SHA-256 or unique prefix of at least 8
hex digits (contract/store/registry.py resolves it). The bytes are checked against their SHA-256
before they are written, and written atomically: a temporary file beside the target, fsync, rename,
so FILE is either the whole model or absent, never half of one.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from contract.store.registry import Registry, RegistryError

CHAMPION = "champion"


def resolve_ref(registry: Registry, ref: str) -> str:
    """The full SHA-256 that `ref` ("champion", a SHA-256 or a prefix) names; RegistryError otherwise."""
    if ref.strip().lower() == CHAMPION:
        sha = registry.champion_sha256()
        if sha is None:
            raise RegistryError("the registry has no champion yet: `wardrobe models list` shows what is there")
        return sha
    return registry.resolve(ref)


def model_bytes(registry: Registry, ref: str) -> tuple[str, bytes]:
    """(SHA-256, ONNX bytes) of the model `ref` names, the bytes checked against their name."""
    sha = resolve_ref(registry, ref)
    data = registry.onnx_bytes(sha)
    if hashlib.sha256(data).hexdigest() != sha:
        raise RegistryError(f"model {sha[:12]} in the registry does not match its SHA-256: not exported")
    return sha, data


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` whole or not at all: a temp file in the same folder, fsync, rename."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; --out takes a file name such as {path / 'model.onnx'}")
    if not path.parent.is_dir():
        raise ValueError(f"{path}: its folder {path.parent} does not exist")
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a power cut
    finally:
        os.close(folder)


def export_model(registry: Registry, ref: str, out: Path) -> str:
    """Write the model `ref` names to `out` (atomically); its SHA-256."""
    sha, data = model_bytes(registry, ref)
    write_atomically(Path(out), data)
    return sha


def run_export(ref: str, out: Path) -> int:
    """`wardrobe models export SHA256 --out FILE` against WARDROBE_DB."""
    from service.registry_cli import open_registry, where

    with open_registry() as registry:
        sha = export_model(registry, ref, out)
    print(f"exported: {sha} from {where()} to {out} ({Path(out).stat().st_size} bytes)")
    return 0


def compare_model(ref: str, folder: Path) -> Path:
    """`wardrobe report --compare REF`: REF as it is when it is a file, else the registry's model it
    names (WARDROBE_DB), written into `folder` as <sha12>.onnx."""
    if Path(ref).is_file():
        return Path(ref)
    from service.registry_cli import open_registry

    looks_like_ref = ref.strip().lower() == CHAMPION or all(c in "0123456789abcdef" for c in ref.strip().lower())
    if not looks_like_ref:
        raise ValueError(f"--compare {ref}: no such model file, and not 'champion' or a registry SHA-256")
    with open_registry() as registry:
        sha, data = model_bytes(registry, ref)
    path = Path(folder) / f"{sha[:12]}.onnx"
    write_atomically(path, data)
    return path

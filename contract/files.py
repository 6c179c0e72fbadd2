"""Files written whole or not at all, durably, and their SHA-256: one implementation for every floor.

A write goes to a temporary file beside the target, is flushed to disk (`fsync`), and is
renamed over the target; then the directory is flushed too, because the rename lives in the
directory, not in the file. Without both, a power loss after the rename can leave the new
name pointing at an empty file: a served model of zero bytes (ext4's `data=ordered` hides
this most of the time, other filesystems and mount options do not).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
"""Disk full, quota reached, file-size limit: the write failed for want of room."""


@contextmanager
def naming_the_file(path: Path, what: str = "file") -> Iterator[None]:
    """Re-raise a write that found no room as an OSError naming `path`: a failed write() alone
    says only "[Errno 28] No space left on device", not which file it was writing."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in NO_ROOM:
            raise
        error = OSError(f"{path}: cannot write the {what} ({exc.strerror}); nothing was written")
        error.errno = exc.errno
        raise error from exc


def make_temp_beside(path: Path, suffix: str = ".tmp") -> Path:
    """An empty temporary file next to `path` (same filesystem, so a rename is atomic),
    with the permissions a plain `open(path, "w")` would give rather than mkstemp's 0600."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return Path(tmp)


def fsync(path: Path) -> None:
    """Flush a file's or a directory's contents to disk (a directory's contents are its names)."""
    fd = os.open(path, os.O_RDONLY)  # POSIX lets a directory be opened read-only to fsync it
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def move_into_place(tmp: Path, target: Path) -> None:
    """Rename a finished temporary file (or directory) over `target`, durably: its contents are
    flushed before the rename, and the directory holding both names after it."""
    tmp, target = Path(tmp), Path(target)
    if tmp.is_dir():
        for inner in sorted(tmp.rglob("*"), reverse=True):  # files before the directories naming them
            fsync(inner)
    fsync(tmp)
    os.replace(tmp, target)
    fsync(target.parent)


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp_path)`, then move the result into place: a crash or a full disk leaves the
    old file (or none), never half of the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_beside(path)
    try:
        with naming_the_file(path):
            write(tmp)
            move_into_place(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_json(data, path: Path) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's bytes (hex), read in blocks so a large file never sits in memory."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()

"""Atomic file writes: write beside the target, then rename, so a crash never leaves half a file."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterator
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


def atomic_write(path: Path, write) -> None:
    """Call `write(tmp_path)` then rename into place, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_beside(path)
    try:
        with naming_the_file(path):
            write(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_json(data, path: Path) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))

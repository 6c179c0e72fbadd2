"""contract.files: writes are whole or absent, flushed before and after the rename; SHA-256 of a file."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from contract import files


class Flushes(list):
    """(path flushed, whether `target` existed at that moment), in order, for every real fsync."""

    target: Path | None = None


@pytest.fixture
def flushes(monkeypatch) -> Flushes:
    seen = Flushes()
    real = os.fsync

    def recording(fd: int) -> None:
        seen.append((os.readlink(f"/proc/self/fd/{fd}"), seen.target is not None and seen.target.exists()))
        real(fd)

    monkeypatch.setattr(files.os, "fsync", recording)
    return seen


def test_atomic_write_flushes_the_file_before_the_rename_and_the_directory_after(tmp_path, flushes):
    target = flushes.target = tmp_path / "model.onnx"
    files.write_bytes(target, b"new model")
    assert target.read_bytes() == b"new model"
    (file_path, target_existed), (dir_path, target_existed_after) = flushes
    assert Path(file_path).parent == tmp_path and Path(file_path).name.startswith(".model.onnx.")
    assert not target_existed  # the contents were on disk before the name pointed at them
    assert Path(dir_path) == tmp_path and target_existed_after  # and the new name after it
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no temporary left behind


def test_a_directory_moved_into_place_has_every_file_flushed_first(tmp_path, flushes):
    work = tmp_path / ".report.tmp"
    (work / "figures").mkdir(parents=True)
    (work / "report.json").write_text("{}")
    (work / "figures" / "a.png").write_bytes(b"png")
    flushes.target = tmp_path / "report"
    files.move_into_place(work, tmp_path / "report")
    flushed = [Path(p) for p, _ in flushes]
    inside = {work / "report.json", work / "figures" / "a.png", work / "figures", work}
    assert set(flushed[:4]) == inside and flushed[3] == work  # the files, then the directory naming them
    assert flushed[4] == tmp_path and (tmp_path / "report" / "figures" / "a.png").read_bytes() == b"png"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "run" / "metrics.json"
    files.write_json({"epoch": 1}, target)

    def half_then_full_disk(tmp: Path) -> None:
        tmp.write_text('{"epo')
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match=r"metrics.json: cannot write the file \(No space left on device\)"):
        files.atomic_write(target, half_then_full_disk)
    assert target.read_text() == '{\n  "epoch": 1\n}\n'
    assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]


def test_a_written_file_gets_the_permissions_a_plain_open_would_give(tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("x")
    files.write_bytes(tmp_path / "atomic", b"x")
    assert (tmp_path / "atomic").stat().st_mode == plain.stat().st_mode


def test_sha256_file_is_the_digest_of_the_bytes(tmp_path):
    data = os.urandom(3 << 20)  # more than one read block
    (tmp_path / "blob").write_bytes(data)
    assert files.sha256_file(tmp_path / "blob") == hashlib.sha256(data).hexdigest()

"""Errors that used to be swallowed or told as something else: each now says what happened."""
from __future__ import annotations

import errno
import os
import sys
import zipfile
from pathlib import Path

import pytest

from builder.cells import pipeline, state
from builder.errors import BuilderError
from builder.guest import check  # noqa: F401 (loads the guest helpers as `_common`, as guests do)
from builder.output import publish

from .test_depends import DATEUTIL, SIX, setup_run

common = sys.modules["_common"]


def a_zip(tmp_path: Path) -> Path:
    path = tmp_path / "calm-1.0.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("calm-1.0/setup.py", "from setuptools import setup\n")
    return path


def test_a_full_disk_while_unpacking_is_not_a_corrupt_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(source: object, sink: object, *args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(common.shutil, "copyfileobj", full)
    (tmp_path / "dest").mkdir()
    with pytest.raises(common.GuestError) as caught:
        common.unpack(str(a_zip(tmp_path)), str(tmp_path / "dest"))
    message = str(caught.value)
    assert "corrupt" not in message and "No space left on device" in message, message
    assert str(tmp_path / "dest") in message, message


def test_a_corrupt_archive_is_still_called_so(tmp_path: Path) -> None:
    path = a_zip(tmp_path)
    path.write_bytes(path.read_bytes()[:40])
    (tmp_path / "dest").mkdir()
    with pytest.raises(common.GuestError, match="corrupt or truncated"):
        common.unpack(str(path), str(tmp_path / "dest"))


def test_verify_does_not_read_unlocked_when_it_cannot_open_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    output = tmp_path / "eggs"
    output.mkdir()
    (output / ".lock").write_text("")
    opened = os.open

    def refused(path: object, flags: int, *args: object) -> int:
        if str(path).endswith(".lock"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return opened(path, flags, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(publish.os, "open", refused)
    with pytest.raises(BuilderError) as caught:
        publish.verify(output)
    assert str(output / ".lock") in caught.value.message and "Permission denied" in caught.value.message


def test_verify_without_a_lock_file_has_nothing_to_wait_for(tmp_path: Path) -> None:
    (tmp_path / "eggs").mkdir()
    assert publish.verify(tmp_path / "eggs") == []


def test_a_corrupt_stage_file_is_not_read_as_never_ran(tmp_path: Path) -> None:
    run, matrix, _ = setup_run(tmp_path)
    six = next(c for c in run.cells if c.id == SIX)
    saved = state.cell_dir(matrix.settings.folders, six) / "build.json"
    for cell in run.cells:
        state.save(matrix.settings.folders, cell, run.results[cell.id]["build"])
    saved.write_text(saved.read_text()[:30])
    with pytest.raises(state.CorruptState) as caught:
        state.load(matrix.settings.folders, six, "build")
    assert str(saved) in caught.value.message
    # `builder test` alone, which reads the saved builds: the cell fails naming the file.
    run.results = {}
    pipeline.test(run)
    assert str(saved) in run.results[SIX]["test"].reason
    assert SIX in run.results[DATEUTIL]["test"].reason

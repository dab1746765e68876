"""Replace a set of files in one folder so that a crash at any instant is recoverable.

Every new file is first written under a hidden temporary name (`.NAME.tmp-PID`) and fsynced.
Then a journal listing every rename and its sha256 is put in place atomically, and only then
are the renames done, in the journal's order; the journal is deleted last. After a crash:
no journal means nothing was renamed yet, so deleting the temporaries gives the old state back;
a journal means every temporary was complete, so finishing the renames gives the new state.

Test hook: BUILDER_PUBLISH_CRASH_AT=<one of CRASH_STEPS> makes the process SIGKILL itself at
that step, so the tests can crash a real publish at each of them.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from ..errors import BuilderError
from ..fetch import sha256_file

JOURNAL = ".publish-journal.json"
CRASH_STEPS = (
    "start", "copying", "copied", "staged", "journal-tmp", "journaled",
    "renamed-one", "renamed-artifacts", "renamed-all", "done",
)
_TMP = re.compile(r"^\..+\.tmp-\d+$")
_CHUNK = 1 << 20
_BROKEN_HINT = f"delete {JOURNAL} and the .*.tmp-* files beside it, publish again, then run verify"


class Rename(NamedTuple):
    tmp: str  # both relative to the folder, "/"-separated
    final: str
    sha256: str


def crash_point(step: str) -> None:
    if os.environ.get("BUILDER_PUBLISH_CRASH_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)


def tmp_name(final: str) -> str:
    folder, _, name = final.rpartition("/")
    return f"{folder}/.{name}.tmp-{os.getpid()}" if folder else f".{name}.tmp-{os.getpid()}"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def stage_bytes(folder: Path, final: str, data: bytes) -> Rename:
    (folder / final).parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(final)
    _write_synced(folder / tmp, data)
    return Rename(tmp, final, hashlib.sha256(data).hexdigest())


def stage_copy(folder: Path, final: str, source: Path) -> tuple[Rename, int]:
    """Copy and hash in one pass, so the hash is of the bytes that were written. Also the size."""
    tmp = tmp_name(final)
    digest = hashlib.sha256()
    size = 0
    with open(source, "rb") as src, open(folder / tmp, "wb") as dst:
        for block in iter(lambda: src.read(_CHUNK), b""):
            dst.write(block)
            digest.update(block)
            size += len(block)
            dst.flush()
            crash_point("copying")
        os.fsync(dst.fileno())
    return Rename(tmp, final, digest.hexdigest()), size


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def commit(folder: Path, renames: Sequence[Rename]) -> None:
    """Make the staged files durable, journal the renames, do them. The caller orders them."""
    for directory in {(folder / r.final).parent for r in renames}:
        fsync_dir(directory)
    crash_point("staged")
    data = {"journal_version": 1, "renames": [r._asdict() for r in renames]}
    tmp = folder / tmp_name(JOURNAL)
    _write_synced(tmp, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
    crash_point("journal-tmp")
    os.replace(tmp, folder / JOURNAL)
    fsync_dir(folder)
    crash_point("journaled")
    _apply(folder, renames)


def _apply(folder: Path, renames: Sequence[Rename]) -> None:
    """Do the journal's renames, then drop the journal. Renames already done are skipped."""
    last_artifact = max(
        (i for i, r in enumerate(renames) if "/" not in r.final and r.final.endswith((".egg", ".whl"))), default=-1
    )
    touched: set[Path] = set()
    for index, rename in enumerate(renames):
        if (folder / rename.tmp).exists():
            os.replace(folder / rename.tmp, folder / rename.final)
            touched.add((folder / rename.final).parent)
        if index == 0:
            crash_point("renamed-one")
        if index == last_artifact:
            crash_point("renamed-artifacts")
    for directory in touched:
        fsync_dir(directory)
    crash_point("renamed-all")
    os.unlink(folder / JOURNAL)
    fsync_dir(folder)


def recover_folder(folder: Path) -> list[str]:
    """Roll an interrupted commit forward if it was journaled, back if not. Says what it did."""
    done = []
    if (folder / JOURNAL).exists():
        renames = _read_journal(folder)
        for tmp, final, sha256 in renames:
            if (folder / tmp).exists():
                ok = (folder / tmp).is_file() and sha256_file(folder / tmp) == sha256
            else:  # renamed before the crash
                ok = (folder / final).is_file() and sha256_file(folder / final) == sha256
            if not ok:
                raise BuilderError(
                    f"an interrupted publish in {folder} cannot be finished: {final} is missing or changed",
                    hint=_BROKEN_HINT,
                )
        _apply(folder, renames)
        done.append(f"{folder.name}: finished an interrupted publish ({len(renames)} files)")
    removed = _remove_strays(folder)
    if removed:
        done.append(f"{folder.name}: removed {removed} temporary file(s) of an interrupted publish")
    return done


def _read_journal(folder: Path) -> list[Rename]:
    path = folder / JOURNAL
    try:
        entries = json.loads(path.read_text())["renames"]
        renames = [Rename(str(e["tmp"]), str(e["final"]), str(e["sha256"])) for e in entries]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BuilderError(f"{path} is unreadable: {exc}", hint=_BROKEN_HINT) from exc
    for name in (n for rename in renames for n in (rename.tmp, rename.final)):
        if name.startswith("/") or ".." in name.split("/"):
            raise BuilderError(f"{path} names a file outside {folder}: {name}", hint=_BROKEN_HINT)
    return renames


def _remove_strays(folder: Path) -> int:
    removed = 0
    nested = [*(folder / "simple").glob("**/"), *(folder / "provenance").glob("**/")]
    for directory in [folder, folder / "os", *sorted(nested, reverse=True)]:
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            if _TMP.match(path.name) and path.is_file():
                path.unlink()
                removed += 1
        # An undone publish may have made a project folder that never got its page.
        if directory != folder and not any(directory.iterdir()):
            directory.rmdir()
    return removed

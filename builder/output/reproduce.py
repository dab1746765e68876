"""A rebuilt artifact against the published one: byte for byte, and when they differ, what does.

`verify --rebuild` builds a published cell again from its pinned inputs; this module only reads
both files. A difference is told member by member (only in one, content, or metadata alone: the
time, the mode, the compression, the maker), and by diffoscope where it is installed, whose
report goes beside the rebuilt file.
"""
from __future__ import annotations

import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import CommandError
from ..fetch import sha256_file
from ..runner import run

DiffKind = Literal["content", "metadata", "only-published", "only-rebuilt", "archive"]


@dataclass(frozen=True)
class MemberDiff:
    name: str  # the member's name in the zip; "" for the archive as a whole
    kind: DiffKind
    detail: str


@dataclass
class Comparison:
    """One published artifact and its rebuild."""

    filename: str
    published: Path
    rebuilt: Path | None  # None: the rebuild made no file of that name
    published_sha256: str = ""
    rebuilt_sha256: str = ""
    differences: list[MemberDiff] = field(default_factory=list)
    diffoscope: Path | None = None  # its text report, when it ran
    diffoscope_note: str = ""  # why it did not run, or how it failed

    @property
    def identical(self) -> bool:
        return self.rebuilt is not None and self.published_sha256 == self.rebuilt_sha256

    def summary(self) -> str:
        """One line: what differs, the content first (that is what a user must look at)."""
        if self.identical:
            return f"{self.filename}: identical (sha256 {self.published_sha256})"
        if self.rebuilt is None:
            return f"{self.filename}: the rebuild made no file of this name"
        parts = []
        for kind, what in (("content", "content differs"), ("metadata", "metadata only differs"),
                           ("only-published", "only in the published file"), ("only-rebuilt", "only in the rebuild")):
            names = [d.name for d in self.differences if d.kind == kind]
            if names:
                shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
                parts.append(f"{what}: {shown}")
        parts += [d.detail for d in self.differences if d.kind == "archive"]
        return f"{self.filename}: differs (sha256 {self.published_sha256} published, {self.rebuilt_sha256} rebuilt): " + "; ".join(parts)


def compare(published: Path, rebuilt: Path | None, report_dir: Path) -> Comparison:
    """Compare the two files; where they differ, find out what (members, then diffoscope)."""
    found = Comparison(published.name, published, rebuilt, published_sha256=sha256_file(published))
    if rebuilt is None:
        return found
    found.rebuilt_sha256 = sha256_file(rebuilt)
    if found.identical:
        return found
    found.differences = member_differences(published, rebuilt)
    found.diffoscope, found.diffoscope_note = _diffoscope(published, rebuilt, report_dir)
    return found


_METADATA = ("date_time", "external_attr", "compress_type", "create_system", "create_version", "extract_version",
             "flag_bits", "extra", "comment")


def member_differences(published: Path, rebuilt: Path) -> list[MemberDiff]:
    """How two zips differ, member by member: a member only in one, a member whose bytes differ
    (content), one whose bytes are the same but not its zip metadata (which fields, both ways),
    and for the archive as a whole the order of its members, its comment, or, when every member
    and its metadata match, the zip's own bytes (compression, headers)."""
    try:
        with zipfile.ZipFile(published) as old, zipfile.ZipFile(rebuilt) as new:
            return _differences(old, new)
    except (OSError, zipfile.BadZipFile) as exc:
        return [MemberDiff("", "archive", f"cannot be read as a zip: {exc}")]


def _differences(old: zipfile.ZipFile, new: zipfile.ZipFile) -> list[MemberDiff]:
    found: list[MemberDiff] = []
    before = {info.filename: info for info in old.infolist()}
    after = {info.filename: info for info in new.infolist()}
    found += [MemberDiff(name, "only-published", "") for name in before if name not in after]
    found += [MemberDiff(name, "only-rebuilt", "") for name in after if name not in before]
    for name, info in before.items():
        other = after.get(name)
        if other is None:
            continue
        a, b = old.read(name), new.read(name)
        if a != b:
            found.append(MemberDiff(name, "content", f"{len(a)} bytes published, {len(b)} rebuilt"))
            continue
        fields = [f"{key} {_shown(key, getattr(info, key))} vs {_shown(key, getattr(other, key))}"
                  for key in _METADATA if getattr(info, key) != getattr(other, key)]
        if fields:
            found.append(MemberDiff(name, "metadata", ", ".join(fields)))
    common = [name for name in before if name in after]
    if common != [name for name in after if name in before]:
        found.append(MemberDiff("", "archive", "the members are in another order"))
    if old.comment != new.comment:
        found.append(MemberDiff("", "archive", "the zip comments differ"))
    if not found:
        found.append(MemberDiff("", "archive", "every member and its metadata are the same: the zip's own bytes "
                                           "differ (compression or headers)"))
    return found


def _shown(key: str, value: object) -> str:
    if key == "date_time" and isinstance(value, tuple):
        year, month, day, hour, minute, second = value
        return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    if key == "external_attr" and isinstance(value, int):
        return f"mode {value >> 16:o}"
    return repr(value)


def _diffoscope(published: Path, rebuilt: Path, report_dir: Path) -> tuple[Path | None, str]:
    """diffoscope's text report of the two files, where diffoscope is installed."""
    if shutil.which("diffoscope") is None:
        return None, "diffoscope is not installed (apt-get install diffoscope gives a full report)"
    report = report_dir / f"{published.name}.diffoscope.txt"
    report_dir.mkdir(parents=True, exist_ok=True)
    try:
        run(["diffoscope", "--no-progress", "--text", str(report), str(published), str(rebuilt)], timeout=900)
    except CommandError as exc:
        if exc.returncode != 1:  # 1 is diffoscope's "they differ"
            return None, f"diffoscope failed (exit {exc.returncode}): {exc.output.strip().splitlines()[-1:] or ''}"
    return (report if report.is_file() else None), ""

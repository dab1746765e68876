"""A package entry as matrix.yaml text, put into the user's file without touching the rest of it.

ruamel.yaml renders the entry and finds where the `packages:` list and an old entry lie in the
file; the new entry's lines are spliced in there, so every other byte of the file (comments,
order, anchors, line breaks inside flow mappings) stays as the user wrote it. The result is then
read by builder's own strict loader before anything uses it.
"""
from __future__ import annotations

import difflib
import io
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from .resolve import AddError


def _yaml() -> YAML:
    y = YAML()
    y.preserve_quotes = True
    y.width = 4096
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def flow_map(items: Mapping[str, Any]) -> CommentedMap:
    found = CommentedMap(items)
    found.fa.set_flow_style()
    return found


def flow_list(items: Sequence[Any]) -> CommentedSeq:
    found = CommentedSeq(items)
    found.fa.set_flow_style()
    return found


def render(entry: CommentedMap) -> str:
    """The entry as an item of `packages:` (indented as the shipped matrix is)."""
    out = io.StringIO()
    _yaml().dump({"packages": [entry]}, out)
    lines = out.getvalue().splitlines(keepends=True)
    assert lines[0].startswith("packages:")
    return "".join(lines[1:])


def _packages_span(text: str) -> tuple[list[Any], list[int], int]:
    """The packages' names, each item's first line (0-based), and the line after the list."""
    doc: Any = _yaml().load(text)
    if not isinstance(doc, CommentedMap) or "packages" not in doc:
        raise AddError("the matrix has no packages: list to add to")
    packages = doc["packages"]
    starts = [packages.lc.item(i)[0] for i in range(len(packages))]
    keys = list(doc.keys())
    after = keys.index("packages") + 1
    end = doc.lc.key(keys[after])[0] if after < len(keys) else len(text.splitlines())
    names = [str(p.get("name", "")) if isinstance(p, Mapping) else "" for p in packages]
    return names, starts, end


def splice(text: str, entry: CommentedMap, replace: str | None = None) -> str:
    """`text` with `entry` added at the end of packages:, or in place of package `replace`."""
    names, starts, end = _packages_span(text)
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    block = render(entry).splitlines(keepends=True)
    if replace is not None:
        index = next((i for i, n in enumerate(names) if canonicalize_name(n) == canonicalize_name(replace)), None)
        if index is None:
            raise AddError(f"{replace} is not in the matrix: nothing to update")
        first = starts[index]
        last = starts[index + 1] if index + 1 < len(starts) else end
        while last > first + 1 and not lines[last - 1].strip():  # keep the blank lines between entries
            last -= 1
        return "".join(lines[:first] + block + lines[last:])
    at = end
    while at > 0 and (not lines[at - 1].strip() or lines[at - 1].lstrip().startswith("#") and at > starts[-1] + 1
                      and not lines[at - 1].startswith("  ")):
        at -= 1  # before the blank lines (and a top-level comment) that end the list
    spacer = ["\n"] if any(not line.strip() for line in lines[starts[0]:end]) else []
    return "".join(lines[:at] + spacer + block + lines[at:])


def diff(old: str, new: str, label: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"{label} (before)", f"{label} (after)"))


def write_atomically(path: Path, text: str) -> None:
    """Replace the file in one step: a Ctrl-C leaves either the old file or the new one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)

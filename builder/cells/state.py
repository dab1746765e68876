"""Where a cell keeps its state between stages: .builder/work/cells/<platform>/<package>/."""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from packaging.utils import canonicalize_name

from ..errors import BuilderError
from ..matrix.model import Folders
from ..matrix.plan import Cell
from ..output.reproduce import Comparison

Stage = Literal["fetch", "images", "build", "test", "publish"]
Status = Literal["passed", "failed", "skipped", "pending"]


@dataclass
class StageResult:
    """What one stage concluded for one cell; stored as JSON so the next stage can run alone."""

    cell: str
    stage: Stage
    status: Status
    reason: str = ""
    log: str = ""
    artifacts: list[str] = field(default_factory=list)  # host paths
    input_key: str = ""
    images: dict[str, str] = field(default_factory=dict)
    duration: float = 0.0
    finished_at: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "passed"


def cell_dir(folders: Folders, cell: Cell) -> Path:
    return folders.work / "cells" / cell.platform.name / canonicalize_name(cell.package.name)


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def save(folders: Folders, cell: Cell, result: StageResult) -> None:
    result.finished_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    path = cell_dir(folders, cell) / f"{result.stage}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(result), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


class CorruptState(BuilderError):
    """A stage's saved result is there but cannot be read: never taken for "the stage never ran"."""


def load(folders: Folders, cell: Cell, stage: Stage) -> StageResult | None:
    """The stage's saved result for the cell; None if the stage never ran for it (or the file was
    written by another version of builder, whose input keys differ from ours anyway, so nothing
    of it could be used). CorruptState if the file is there and damaged: save() replaces it
    atomically, so that is a disk or a hand that changed it, and the user must hear of it."""
    path = cell_dir(folders, cell) / f"{stage}.json"
    hint = f"run the stage again (python -m builder {stage} --cell {cell.id}), or remove the file"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise CorruptState(f"cannot read {path}, the saved {stage} result of {cell.id}: {exc}", hint=hint) from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CorruptState(f"{path}, the saved {stage} result of {cell.id}, is damaged: {exc}", hint=hint) from exc
    if not isinstance(data, dict):
        raise CorruptState(f"{path}, the saved {stage} result of {cell.id}, is damaged: not an object", hint=hint)
    try:
        return StageResult(**data)
    except TypeError:
        return None  # other fields: another version of builder wrote it (see above)


@dataclass
class Rebuilt:
    """What `verify --rebuild` found for one cell: identical (every published artifact rebuilt to
    the same bytes), differs (the comparisons say how), or unchecked (and why: not published,
    published from other inputs, the rebuild failed)."""

    status: Literal["identical", "differs", "unchecked"]
    reason: str = ""
    comparisons: list[Comparison] = field(default_factory=list)
    folder: Path | None = None  # the rebuild's files and log

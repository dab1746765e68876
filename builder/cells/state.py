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

from ..matrix.model import Matrix
from ..matrix.plan import Cell

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


def cell_dir(matrix: Matrix, cell: Cell) -> Path:
    return matrix.settings.work / "cells" / cell.platform.name / canonicalize_name(cell.package.name)


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def save(matrix: Matrix, cell: Cell, result: StageResult) -> None:
    result.finished_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    path = cell_dir(matrix, cell) / f"{result.stage}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(result), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def load(matrix: Matrix, cell: Cell, stage: Stage) -> StageResult | None:
    path = cell_dir(matrix, cell) / f"{stage}.json"
    try:
        return StageResult(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None

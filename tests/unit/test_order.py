"""What a run publishes and reports does not depend on the order its cells finished in (-j N)."""
from __future__ import annotations

import io
import random
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from builder.cells import pipeline
from builder.cells.state import StageResult
from builder.machines.base import Exec, Images
from builder.matrix.model import Base, BuildSpec, Matrix, Package, Pin, Platform, Settings
from builder.matrix.plan import Cell, all_cells
from builder.report import files as reports
from builder.report import terminal as report

from .test_cells import FakeBackend

FINISHED = "2026-01-02T03:04:05Z"


def matrix(root: Path) -> Matrix:
    platforms = tuple(
        Platform(name, "docker", "debian", "/usr/bin/python3", Base("debootstrap", "bookworm"), Path("x"))
        for name in ("debian12", "debian11-py27")
    )
    packages = tuple(
        Package(name, ("egg", "wheel"), BuildSpec(Pin(name, "1.0", str(n) * 64)), depends=depends)
        for n, (name, depends) in enumerate([("six", ()), ("PyYAML", ()), ("python-dateutil", ("six",)), ("lxml", ())])
    )
    settings = Settings(output=root / "out" / "eggs", work=root / "out" / "work")
    return Matrix(root / "matrix.yaml", settings, platforms, packages)


def artifacts(root: Path, cell: Cell) -> list[str]:
    """An egg and a wheel per cell, outside the folders a run writes, so both runs publish them."""
    name = cell.package.name.replace("-", "_")
    folder = root / "built" / cell.platform.name
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for filename in (f"{name}-1.0-py3.11.egg", f"{name}-1.0-py3-none-any.whl"):
        (folder / filename).write_bytes(f"{cell.id} {filename}".encode())
        paths.append(str(folder / filename))
    return paths


def finished(run: pipeline.Run, root: Path, order: list[tuple[Cell, str]]) -> None:
    """Record stage results in the given completion order, as the -j N workers would."""
    for cell, stage in order:
        failed = cell.package.name == "lxml" and stage == "test"
        result = StageResult(
            cell.id, stage, "failed" if failed else "passed", reason="import lxml.etree failed" if failed else "",
            artifacts=artifacts(root, cell), input_key=f"key {cell.id}", images={"build": "b", "runtime": "r"},
            duration=1.5, finished_at=FINISHED,
        )
        run.results.setdefault(cell.id, {})[stage] = result


def outputs(root: Path, order: list[tuple[Cell, str]]) -> dict[str, bytes]:
    """Publish, write the reports and the summary after that completion order; every byte of it."""
    shutil.rmtree(root / "out", ignore_errors=True)
    m = matrix(root)
    cells = all_cells(m)
    run = pipeline.Run(m, cells, echo=lambda line: None)
    run.keys = {c.id: f"key {c.id}" for c in cells}
    # Publishing asks each runtime image what it is (its fingerprint): this machine answers.
    run.images = {p.name: Images("b", "r") for p in m.platforms}
    shutil.rmtree(root / "guests", ignore_errors=True)
    (root / "guests").mkdir()
    run.backends = {"docker": FakeBackend(root / "guests", lambda out, argv, spec: Exec(1, "no guest"))}  # type: ignore[dict-item]
    by_id = {c.id: c for c in cells}
    finished(run, root, [(by_id[c.id], stage) for c, stage in order])
    pipeline.publish(run)
    reports.write_reports(m.settings.work / "report", "builder all", reports.from_run(run))
    screen = io.StringIO()
    report.summary(run, Console(file=screen, width=200, color_system=None), "publish")
    files = {str(p.relative_to(root / "out")): p.read_bytes() for p in sorted((root / "out").rglob("*"))
             if p.is_file() and "cells" not in p.parts and p.name != ".lock"}
    files["summary"] = screen.getvalue().encode()
    return files


@pytest.fixture(autouse=True)
def still_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    # The publish stage times itself; a stopped clock leaves order as the only difference.
    monkeypatch.setattr(pipeline, "time", SimpleNamespace(monotonic=lambda: 100.0))


def test_index_manifest_and_reports_do_not_depend_on_completion_order(tmp_path: Path) -> None:
    cells = all_cells(matrix(tmp_path))
    in_matrix_order = [(c, stage) for c in cells for stage in ("build", "test")]
    shuffled_cells = list(cells)
    random.Random(6).shuffle(shuffled_cells)
    # Builds finish in one order, tests in another (reverse of it): each cell still builds first.
    other_order = [(c, "build") for c in shuffled_cells] + [(c, "test") for c in reversed(shuffled_cells)]
    assert [c.id for c, _ in other_order] != [c.id for c, _ in in_matrix_order]

    one = outputs(tmp_path, in_matrix_order)
    two = outputs(tmp_path, other_order)

    assert sorted(one) == sorted(two)
    assert "eggs/debian12/manifest.json" in one and "eggs/debian11-py27/index.html" in one
    assert "work/report/results.json" in one and "work/report/report.html" in one
    assert b"lxml" in one["summary"] and b"failed" in one["work/report/results.json"]
    for name in one:
        assert one[name] == two[name], f"{name} differs with the completion order"

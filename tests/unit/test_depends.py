"""A cell is tested against, and published with, only dependencies that passed: a dependency
whose test failed in this run (and is not published) stops its dependents, naming it."""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from builder.cells import pipeline
from builder.cells.state import StageResult, cell_dir
from builder.machines.base import Exec, Images
from builder.matrix.load import loads
from builder.matrix.model import Matrix
from builder.matrix.plan import all_cells

from .test_cells import FakeBackend

MATRIX = """\
settings: {output: out/eggs, work: out/work, cache: out/cache}
platforms:
  - {name: debian12, family: debian, base: {debootstrap: bookworm}, python: /usr/bin/python3}
packages:
  - {name: six, version: "1.16.0", sha256: %s, formats: [egg], extensions: []}
  - {name: python-dateutil, version: "2.9.0", sha256: %s, formats: [egg], extensions: [], depends: [six]}
""" % ("a" * 64, "b" * 64)

SIX, DATEUTIL = "debian12/six", "debian12/python-dateutil"


def setup_run(tmp_path: Path) -> tuple[pipeline.Run, Matrix, list[str]]:
    (tmp_path / "images" / "debian12").mkdir(parents=True)
    (tmp_path / "images" / "debian12" / "Dockerfile").write_text("FROM scratch\n")
    matrix = loads(MATRIX, tmp_path / "matrix.yaml")
    cells = all_cells(matrix)
    run = pipeline.Run(matrix, cells, echo=lambda line: None)
    run.keys = {c.id: f"key {c.id}" for c in cells}
    run.images = {"debian12": Images("b", "r")}
    # Publishing asks the runtime image what it is (its fingerprint): this machine answers.
    (tmp_path / "guests").mkdir()
    run.backends = {"docker": FakeBackend(tmp_path / "guests", lambda out, argv, spec: Exec(1, "no guest"))}  # type: ignore[dict-item]
    for cell in cells:
        cell_dir(matrix.settings.folders, cell).mkdir(parents=True)  # as the build stage leaves it
        egg = tmp_path / "built" / f"{cell.package.name.replace('-', '_')}-1.0-py3.11.egg"
        egg.parent.mkdir(parents=True, exist_ok=True)
        egg.write_bytes(cell.id.encode())
        run.results[cell.id] = {"build": StageResult(cell.id, "build", "passed", artifacts=[str(egg)],
                                                     input_key=run.keys[cell.id])}
    return run, matrix, []


def test_a_dependent_is_not_tested_against_a_dependency_whose_test_failed(tmp_path: Path) -> None:
    run, matrix, _ = setup_run(tmp_path)
    checked: list[str] = []

    def guest(out: Path, argv: Sequence[str], spec: Mapping[str, object]) -> Exec:
        item = spec["items"][0]  # type: ignore[index]
        checked.append(item["artifact"])
        ok = "six" not in item["artifact"]
        (out / "egg").mkdir(parents=True, exist_ok=True)
        (out / "egg" / "check-result.json").write_text(json.dumps({"ok": ok, "reasons": [] if ok else ["import six.moves failed"]}))
        return Exec(0 if ok else 1, "")

    run.backends = {"docker": FakeBackend(tmp_path / "guests", guest)}  # type: ignore[dict-item]
    run.jobs = 2
    pipeline.test(run)
    assert not run.results[SIX]["test"].ok
    dependent = run.results[DATEUTIL]["test"]
    assert dependent.status == "failed"
    assert SIX in dependent.reason and "test" in dependent.reason, dependent.reason
    assert [Path(a).name for a in checked] == ["six-1.0-py3.11.egg"]  # no guest for the dependent


def test_a_dependent_is_not_published_when_its_dependency_did_not_pass(tmp_path: Path) -> None:
    run, matrix, _ = setup_run(tmp_path)
    for cell in run.cells:
        ok = cell.id != SIX
        run.results[cell.id]["test"] = StageResult(
            cell.id, "test", "passed" if ok else "failed", reason="" if ok else "import six.moves failed",
            artifacts=run.results[cell.id]["build"].artifacts, input_key=run.keys[cell.id],
            images={"build": "b", "runtime": "r"})
    pipeline.publish(run)
    manifest = matrix.settings.output / "debian12" / "manifest.json"
    assert not manifest.exists() or DATEUTIL not in json.loads(manifest.read_text()).get("cells", {})
    published = run.results[DATEUTIL].get("publish")
    assert published is not None and not published.ok and SIX in published.reason, published


def test_a_tampered_published_file_is_rebuilt_and_said_so(tmp_path: Path) -> None:
    run, matrix, _ = setup_run(tmp_path)
    for cell in run.cells:
        run.results[cell.id]["test"] = StageResult(cell.id, "test", "passed", artifacts=run.results[cell.id]["build"].artifacts,
                                                   input_key=run.keys[cell.id], images={"build": "b", "runtime": "r"})
    pipeline.publish(run)
    published = matrix.settings.output / "debian12" / "six-1.0-py3.11.egg"
    with open(published, "ab") as handle:
        handle.write(b"x")
    said: list[str] = []
    again = pipeline.Run(matrix, run.cells, echo=said.append)
    again.keys = dict(run.keys)
    pipeline.up_to_date(again)
    assert again.done == {DATEUTIL}
    assert [line for line in said if line.startswith(f"[{SIX}]")] == [
        f"[{SIX}] {published} no longer matches the manifest (size or sha256): changed since it was published; rebuilding"
    ], said


def test_waves_order_dependencies_first_even_through_a_cell_not_run(tmp_path: Path) -> None:
    from builder.matrix import plan

    text = MATRIX.replace("depends: [six]}", "depends: [mid]}") + (
        '  - {name: mid, version: "1.0", sha256: %s, formats: [egg], extensions: [], depends: [six]}\n' % ("c" * 64))
    (tmp_path / "images" / "debian12").mkdir(parents=True)
    (tmp_path / "images" / "debian12" / "Dockerfile").write_text("FROM scratch\n")
    cells = {c.package.name: c for c in all_cells(loads(text, tmp_path / "matrix.yaml"))}
    todo = [cells["python-dateutil"], cells["six"]]  # mid: published, not run
    waves = pipeline._waves(todo, plan.Dependencies(list(cells.values())))
    assert [[c.package.name for c in wave] for wave in waves] == [["six"], ["python-dateutil"]]

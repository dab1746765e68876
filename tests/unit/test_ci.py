"""The CI matrix documents, and the example pipelines that consume them."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from builder.errors import SelectionError
from builder.matrix.ci import matrix_document
from builder.matrix.model import Base, BuildSpec, Matrix, Package, Pin, Platform, Settings
from builder.matrix.plan import Cell, all_cells

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "ci"


def platform(name: str, enabled: bool = True, backend: str = "docker") -> Platform:
    base = Base("debootstrap", "bookworm") if backend == "docker" else None
    return Platform(name, backend, "debian", "/usr/bin/python3", base, Path(name), enabled=enabled)  # type: ignore[arg-type]


def package(name: str, version: str = "1.0") -> Package:
    return Package(name, ("egg", "wheel"), BuildSpec(Pin(name, version, name[0].lower() * 64)))


@pytest.fixture
def cells() -> list[Cell]:
    matrix = Matrix(
        Path("matrix.yaml"),
        Settings(),
        (platform("debian11-py27"), platform("debian12"), platform("freebsd", enabled=False, backend="vagrant")),
        (package("PyYAML", "6.0.2"), package("python-dateutil", "2.9.0")),
    )
    return all_cells(matrix)


IDS = [
    "debian11-py27/pyyaml", "debian11-py27/python-dateutil", "debian12/pyyaml", "debian12/python-dateutil",
    "freebsd/pyyaml", "freebsd/python-dateutil",
]


def test_json_lists_every_cell_in_the_order_given(cells: list[Cell]) -> None:
    document = json.loads(matrix_document(cells, "json"))
    assert [c["id"] for c in document["cells"]] == IDS
    assert document["cells"][0] == {
        "id": "debian11-py27/pyyaml", "platform": "debian11-py27", "package": "PyYAML", "version": "6.0.2",
        "backend": "docker", "enabled": True,
    }
    assert document["cells"][-1] == {
        "id": "freebsd/python-dateutil", "platform": "freebsd", "package": "python-dateutil", "version": "2.9.0",
        "backend": "vagrant", "enabled": False,
    }
    reversed_ids = [c["id"] for c in json.loads(matrix_document(cells[::-1], "json"))["cells"]]
    assert reversed_ids == IDS[::-1]


def test_github_is_one_line_of_strategy_matrix(cells: list[Cell]) -> None:
    text = matrix_document(cells, "github")
    assert "\n" not in text  # it goes through `echo "matrix=…" >> $GITHUB_OUTPUT`
    assert json.loads(text) == {
        "include": [{"cell": i, "platform": i.split("/")[0], "package": c.package.name} for i, c in zip(IDS, cells, strict=True)]
    }


def test_gitlab_is_a_parallel_matrix_with_one_job_per_cell(cells: list[Cell]) -> None:
    text = matrix_document(cells, "gitlab")
    assert yaml.safe_load(text) == {"build": {"parallel": {"matrix": [{"CELL": i} for i in IDS]}}}
    assert "- CELL: debian12/pyyaml\n" in text


@pytest.mark.parametrize("fmt", ["github", "gitlab", "json"])
def test_documents_are_stable_and_ids_unique(cells: list[Cell], fmt: Any) -> None:
    assert matrix_document(cells, fmt) == matrix_document(list(cells), fmt)
    assert len(set(IDS)) == len(IDS)
    with pytest.raises(SelectionError, match="cells given twice: debian12/pyyaml"):
        matrix_document([*cells, cells[2]], fmt)


def test_a_matrix_too_big_for_the_ci_service_is_refused(cells: list[Cell]) -> None:
    many = [Cell(package(f"p{n}"), cells[0].platform) for n in range(257)]
    with pytest.raises(SelectionError, match="at most 256"):
        matrix_document(many, "github")
    with pytest.raises(SelectionError, match="at most 200"):
        matrix_document(many[:201], "gitlab")
    assert len(json.loads(matrix_document(many, "json"))["cells"]) == 257


def _runs(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in job.get("steps", []) if "run" in step]


def test_github_example_consumes_the_keys_the_document_provides(cells: list[Cell]) -> None:
    workflow = yaml.safe_load((EXAMPLES / "github-build-matrix.yml").read_text())
    jobs = workflow["jobs"]
    assert any("python -m builder matrix --format github" in run and "$GITHUB_OUTPUT" in run for run in _runs(jobs["plan"]))
    assert jobs["plan"]["outputs"]["matrix"] == "${{ steps.cells.outputs.matrix }}"

    consumers = [name for name, job in jobs.items() if "matrix" in job.get("strategy", {})]
    assert consumers == ["cell"]
    cell_job = jobs["cell"]
    assert cell_job["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    assert cell_job["needs"] == "plan"
    assert "python -m builder all --cell ${{ matrix.cell }}" in _runs(cell_job)
    provided = set(json.loads(matrix_document(cells, "github"))["include"][0])
    used = set(re.findall(r"matrix\.(\w+)", yaml.safe_dump(cell_job)))
    assert used <= provided, used - provided

    merge = jobs["merge"]
    assert "cell" in merge["needs"]
    assert any(run.startswith("python -m builder merge") for run in _runs(merge))


def test_gitlab_example_consumes_the_keys_the_document_provides(cells: list[Cell]) -> None:
    pipeline = yaml.safe_load((EXAMPLES / "gitlab-ci.yml").read_text())
    plan = pipeline["plan"]
    assert "python -m builder matrix --format gitlab > cells.yml" in plan["script"]
    assert "cells.yml" in plan["artifacts"]["paths"]
    includes = pipeline["cells"]["trigger"]["include"]
    assert {"artifact": "cells.yml", "job": "plan"} in includes
    assert {"local": ".gitlab-ci.yml"} in includes  # the copy of this example: where `build` is

    generated = yaml.safe_load(matrix_document(cells, "gitlab"))
    (job_name,) = generated
    build = pipeline[job_name]  # the artifact's matrix deep-merges into this job
    assert "parallel" not in build
    assert 'python -m builder all --cell "$CELL"' in build["script"]
    (variable,) = generated[job_name]["parallel"]["matrix"][0]
    used = set(re.findall(r"\$\{?(CELL\w*)", yaml.safe_dump(build)))
    assert used == {variable}

    stages = pipeline["stages"]
    merge = pipeline["merge"]
    assert stages.index(merge["stage"]) > stages.index(build["stage"])
    assert any(line.startswith("python -m builder merge") for line in merge["script"])
    # plan and cells run in the parent pipeline only; build and merge in the child only.
    parent = pipeline[".parent"]["rules"][0]["if"]
    assert parent == '$CI_PIPELINE_SOURCE != "parent_pipeline"'
    assert all(pipeline[j]["extends"] == ".parent" for j in ("plan", "cells"))
    for job in (build, merge):
        assert job["rules"][0]["if"] == '$CI_PIPELINE_SOURCE == "parent_pipeline"'

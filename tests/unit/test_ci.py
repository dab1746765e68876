"""The CI matrix documents, and the example pipelines that consume them."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from builder.errors import ConfigError, SelectionError
from builder.matrix.ci import matrix_document
from builder.matrix.load import load
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
def test_a_cell_given_twice_is_refused(cells: list[Cell], fmt: Any) -> None:
    with pytest.raises(SelectionError, match="cells given twice: debian12/pyyaml"):
        matrix_document([*cells, cells[2]], fmt)


# One CI job per cell id: ids must be unique across a matrix, and the same in every process that
# plans the run (the plan job and each cell job load the matrix separately).
DOCUMENT = """
import sys
from builder.matrix.ci import matrix_document
from builder.matrix.load import load
from builder.matrix.plan import all_cells
print(matrix_document(all_cells(load(sys.argv[1])), "json"))
"""


def _generated(folder: Path, platforms: int = 12, packages: int = 120) -> Path:
    """A large matrix whose package names differ in every way a name can (case, '-', '_', '.',
    digits, prefixes of each other) while staying distinct once canonicalized."""
    names = []
    for n in range(packages):
        stem = ["py", "Py", "lib", "LIB", "x"][n % 5] + ["_", "-", ".", ""][n % 4] + "ext" + str(n)
        names.append(stem if n % 3 else stem + "-C")
    lines = ["platforms:"]
    for n in range(platforms):
        name = f"p{n}" if n % 2 else f"plat.{n}-x"
        (folder / "images" / name).mkdir(parents=True)
        (folder / "images" / name / "Dockerfile").write_text("FROM scratch\n")
        lines += [f"  - name: {name}", "    family: debian", "    base: {debootstrap: bookworm}", "    python: /usr/bin/python3"]
    lines.append("packages:")
    for n, name in enumerate(names):
        lines += [f"  - name: {name}", f'    version: "{n}.0"', f"    sha256: {n:064x}"]
    path = folder / "matrix.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("which", ["shipped", "generated"])
def test_cell_ids_are_unique_and_the_same_in_every_process(tmp_path: Path, which: str) -> None:
    path = EXAMPLES.parents[1] / "matrix.yaml" if which == "shipped" else _generated(tmp_path)
    matrix = load(path)
    cells = all_cells(matrix)
    ids = [c.id for c in cells]
    expected = sum(1 for pk in matrix.packages for pl in matrix.platforms if pk.platforms is None or pl.name in pk.platforms)
    assert len(ids) == expected and len(set(ids)) == len(ids)
    assert len({(c.platform.name, c.package.name) for c in cells}) == len(ids)
    if which == "generated":
        assert len(ids) == 12 * 120
    document = matrix_document(cells, "json")
    assert [c["id"] for c in json.loads(document)["cells"]] == ids
    # Stable across runs: separate interpreters with different hash seeds plan the same ids.
    root = Path(__file__).resolve().parents[2]
    for seed in ("1", "4242"):
        done = subprocess.run([sys.executable, "-c", DOCUMENT, str(path)], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(root)})
        assert done.stdout.strip() == document.strip()


def test_names_that_would_share_a_cell_id_are_refused(tmp_path: Path) -> None:
    path = _generated(tmp_path, platforms=1, packages=2)
    path.write_text(path.read_text().replace("name: py_ext0-C", "name: PY.ext1"))  # canonically py-ext1
    with pytest.raises(ConfigError, match="duplicate package"):
        load(path)


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

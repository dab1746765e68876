"""Two `builder all` on the same tree at once: the second waits for the first, saying for whom,
then finds the work done; the output folder is whole and its manifest true. Two trees sharing
one output folder at once: both publish, one at a time, and the index and manifest hold both."""
from __future__ import annotations

import json
import time
from pathlib import Path

from .conftest import builder, project
from .sdists import (
    containers,
    entry,
    fixture_sdist,
    guest_running,
    matrix_text,
    no_strays,  # noqa: F401 - an autouse fixture: no builder outlives its test
    sdist,
    start,
)


def test_a_second_run_waits_for_the_first_and_corrupts_nothing(tmp_path: Path) -> None:
    sleepy = entry("sleepy", *fixture_sdist(tmp_path / "src", "sleepy"))
    matrix = project(tmp_path / "p", matrix_text(sleepy))
    cell = tmp_path / "p" / ".builder" / "work" / "cells" / "debian12" / "sleepy"
    first = start(matrix, "all")
    guest_running(first, "build", cell / "build.log", "sleepy: setup.py is running")
    second = start(matrix, "all")
    # While the first runs, the second starts no guest of its own.
    while first.poll() is None:
        assert containers(second.pid) == []
        time.sleep(0.2)
    out_first, _ = first.communicate(timeout=60)
    out_second, _ = second.communicate(timeout=300)
    assert first.returncode == 0, out_first
    assert second.returncode == 0, out_second
    assert f"is in use by pid {first.pid} on " in out_second and "all --matrix" in out_second, out_second
    assert "[debian12/sleepy] up to date" in out_second, out_second  # it waited: the first had published
    manifest = json.loads((tmp_path / "p" / "eggs" / "debian12" / "manifest.json").read_text())
    assert list(manifest["cells"]) == ["debian12/sleepy"]
    checked = builder(matrix, "verify")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _tree(folder: Path, eggs: Path, names: list[str]) -> Path:
    packages = [entry(n, *sdist(folder / "src", n, {
        "setup.py": f"from setuptools import setup\nsetup(name='{n}', version='1.0', py_modules=['{n}'])\n",
        f"{n}.py": "X = 1\n",
    })) for n in names]
    return project(folder, f"settings: {{output: {eggs}}}\n" + matrix_text(*packages))


def test_two_trees_sharing_one_output_folder_publish_whole(tmp_path: Path) -> None:
    eggs = tmp_path / "eggs"
    one = _tree(tmp_path / "one", eggs, ["alpha", "beta", "gamma"])
    two = _tree(tmp_path / "two", eggs, ["delta", "epsilon", "zeta"])
    runs = [start(one, "all", "-j", "2"), start(two, "all", "-j", "2")]  # at once: their publishes meet
    outs = [run.communicate(timeout=600)[0] for run in runs]
    for run, out in zip(runs, outs, strict=True):
        assert run.returncode == 0, out
    manifest = json.loads((eggs / "debian12" / "manifest.json").read_text())
    names = ["alpha", "beta", "delta", "epsilon", "gamma", "zeta"]
    assert sorted(manifest["cells"]) == [f"debian12/{n}" for n in names]
    eggs_published = sorted(p.name for p in (eggs / "debian12").glob("*.egg"))
    assert eggs_published == [f"{n}-1.0-py3.11.egg" for n in names]
    assert sorted(manifest["artifacts"]) == eggs_published
    index = (eggs / "debian12" / "index.html").read_text()
    assert all(f'href="{egg}' in index for egg in eggs_published), index
    for matrix in (one, two):
        checked = builder(matrix, "verify")
        assert checked.returncode == 0, checked.stdout + checked.stderr

"""A failing setup.py and a failing import each fail their own cell, with the reason; with
--fail-fast the first failure stops the run and nothing more is built or published."""
from __future__ import annotations

import json
from pathlib import Path

from .conftest import builder, project
from .sdists import CALM, entry, matrix_text, sdist

BROKEN = {"setup.py": "raise RuntimeError('broken on purpose: this setup.py cannot build')\n"}
BADIMPORT = {
    "setup.py": "from setuptools import setup\nsetup(name='badimport', version='1.0', py_modules=['badimport'])\n",
    "badimport.py": "raise ImportError('badimport needs libnothing.so.7')\n",
}


def results(root: Path, cell: str) -> dict[str, dict]:
    folder = root / ".builder" / "work" / "cells" / "debian12" / cell
    return {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}


def test_failures_stay_their_own_and_fail_fast_stops_at_the_first(tmp_path: Path) -> None:
    src = tmp_path / "src"
    text = matrix_text(
        entry("broken", *sdist(src, "broken", BROKEN)),
        entry("badimport", *sdist(src, "badimport", BADIMPORT)),
        entry("calm", *sdist(src, "calm", CALM)),
    )
    matrix = project(tmp_path / "p", text)
    done = builder(matrix, "all", "-j", "2")
    assert done.returncode == 1, done.stdout + done.stderr
    root = tmp_path / "p"
    broken, badimport, calm = (results(root, c) for c in ("broken", "badimport", "calm"))
    assert broken["build"]["status"] == "failed" and "broken on purpose" in broken["build"]["reason"]
    assert badimport["build"]["status"] == "passed" and badimport["test"]["status"] == "failed"
    assert "badimport" in badimport["test"]["reason"] and "libnothing.so.7" in badimport["test"]["reason"]
    assert calm["publish"]["status"] == "passed"
    assert sorted(p.name for p in (root / "eggs" / "debian12").glob("*.egg")) == ["calm-1.0-py3.11.egg"]
    assert "2 of 3 cell(s) did not pass: debian12/broken, debian12/badimport" in done.stderr

    # --fail-fast, one cell at a time, in matrix order: the broken build stops everything.
    matrix = project(tmp_path / "q", text)
    done = builder(matrix, "all", "-j", "1", "--fail-fast")
    assert done.returncode == 1, done.stdout + done.stderr
    root = tmp_path / "q"
    assert results(root, "broken")["build"]["status"] == "failed"
    for cell in ("badimport", "calm"):
        found = results(root, cell)
        assert found["build"]["status"] == "skipped", found
        assert "skipped after a failure (--fail-fast)" in found["build"]["reason"]
        assert "test" not in found and "publish" not in found
    assert not (root / "eggs" / "debian12").exists()
    assert "3 of 3 cell(s) did not pass" in done.stderr

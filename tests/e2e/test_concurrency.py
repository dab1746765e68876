"""Two `builder all` on the same tree at once: the second waits for the first, saying for whom,
then finds the work done; the output folder is whole and its manifest true."""
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

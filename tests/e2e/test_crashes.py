"""kill -9 of `builder all` in the middle of the build and of the test stage (publish has its own
tests in tests/unit/test_publish.py): the output folder is exactly as before, its manifest
still tells the truth, the next run removes the leftover containers and finishes the work."""
from __future__ import annotations

import json
from pathlib import Path

from .conftest import builder, project
from .sdists import (
    CALM,
    containers,
    entry,
    fixture_sdist,
    guest_running,
    matrix_text,
    no_strays,  # noqa: F401 - an autouse fixture: no builder outlives its test
    sdist,
    snapshot,
    start,
)


def test_kill_9_during_build_and_during_test_loses_nothing(tmp_path: Path) -> None:
    calm = entry("calm", *sdist(tmp_path / "src", "calm", CALM))
    sleepy = entry("sleepy", *fixture_sdist(tmp_path / "src", "sleepy"))
    matrix = project(tmp_path / "p", matrix_text(calm))
    eggs = tmp_path / "p" / "eggs"
    cell = tmp_path / "p" / ".builder" / "work" / "cells" / "debian12" / "sleepy"
    done = builder(matrix, "all")
    assert done.returncode == 0, done.stdout + done.stderr
    before = snapshot(eggs)
    assert "debian12/calm-1.0-py3.11.egg" in before, sorted(before)
    matrix.write_text(matrix_text(calm, sleepy))

    # 1. Killed while sleepy's setup.py runs in its build guest.
    run = start(matrix, "all")
    guest_running(run, "build", cell / "build.log", "sleepy: setup.py is running")
    run.kill()
    run.wait(timeout=60)
    assert containers(run.pid), "the killed run left no container: the kill came too late to prove anything"
    assert snapshot(eggs) == before
    checked = builder(matrix, "verify")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # 2. Killed while sleepy's egg is being imported in its test guest. This run starts by
    # removing what the first one left.
    second = start(matrix, "all")
    guest_running(second, "runtime", cell / "test.log", "== checking sleepy-1.0")
    second.kill()
    out, _ = second.communicate(timeout=60)
    assert "removed leftover container" in out, out
    assert containers(run.pid) == []
    assert containers(second.pid), "the killed run left no container: the kill came too late to prove anything"
    assert snapshot(eggs) == before
    checked = builder(matrix, "verify")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # 3. `clean` removes the second run's container; the rerun finishes the work and leaves the
    # earlier cell's files as they were.
    cleaned = builder(matrix, "clean")
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert containers(second.pid) == []
    done = builder(matrix, "all")
    assert done.returncode == 0, done.stdout + done.stderr
    after = snapshot(eggs)
    assert {k: v for k, v in after.items() if "sleepy" not in k and k.endswith(".egg")} == {
        k: v for k, v in before.items() if k.endswith(".egg")
    }
    manifest = json.loads((eggs / "debian12" / "manifest.json").read_text())
    assert sorted(manifest["cells"]) == ["debian12/calm", "debian12/sleepy"]
    assert "sleepy-1.0-py3.11.egg" in manifest["artifacts"]
    checked = builder(matrix, "verify")
    assert checked.returncode == 0, checked.stdout + checked.stderr

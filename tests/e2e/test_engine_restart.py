"""The Docker engine restarted while guests run: those cells fail with a clear reason, the run
ends with a non-zero status and no traceback, and the rerun succeeds.

This stops the machine's engine, which stops every container on it, other people's included:
on a shared machine set BUILDER_TEST_NO_ENGINE_RESTART=1 to leave it out (under CI=true the
test then fails instead: a skipped guarantee must not pass green). The engine is
started again (as ./bootstrap.sh starts it, through .ci/engine) whatever happens in the test.
"""
from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from .conftest import REPO, builder, project
from .sdists import (
    CALM,
    containers,
    entry,
    fixture_sdist,
    guest_running,
    matrix_text,
    no_strays,  # noqa: F401 - an autouse fixture: no builder outlives its test
    sdist,
    start,
)

PID_FILE = Path("/var/run/docker.pid")


def verdict(environ: Mapping[str, str], pid_file: Path = PID_FILE) -> tuple[str, str] | None:
    """None when the test can run here; else ("skip", why), or ("fail", why) under CI=true:
    a guarantee test that skips itself in CI would pass green without proving anything."""
    if environ.get("BUILDER_TEST_NO_ENGINE_RESTART"):
        why = "BUILDER_TEST_NO_ENGINE_RESTART is set"
    elif environ.get("DOCKER_HOST"):
        why = "the engine is not this machine's own (DOCKER_HOST is set)"
    elif not pid_file.exists():
        why = f"no dockerd of this machine to restart ({pid_file} is missing)"
    else:
        return None
    if environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        return "fail", f"the engine-restart guarantee cannot be proven in CI: {why}"
    return "skip", why


@pytest.fixture(autouse=True)
def can_restart_the_engine() -> None:
    found = verdict(os.environ)
    if found is not None:
        kind, why = found
        if kind == "fail":
            pytest.fail(why, pytrace=False)
        pytest.skip(why)


def engine(action: str) -> None:
    done = subprocess.run([str(REPO / ".ci" / "engine"), action], capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, f"engine {action}: {done.stdout}{done.stderr}"


def test_an_engine_restart_fails_the_running_cells_cleanly_and_the_rerun_succeeds(tmp_path: Path) -> None:
    calm = entry("calm", *sdist(tmp_path / "src", "calm", CALM))
    sleepy = entry("sleepy", *fixture_sdist(tmp_path / "src", "sleepy"))
    matrix = project(tmp_path / "p", matrix_text(calm, sleepy))
    cells = tmp_path / "p" / ".builder" / "work" / "cells" / "debian12"
    done = builder(matrix, "all", "--cell", "debian12/calm")  # published before the restart
    assert done.returncode == 0, done.stdout + done.stderr
    run = start(matrix, "all")
    try:
        guest_running(run, "build", cells / "sleepy" / "build.log", "sleepy: setup.py is running")
        engine("stop")
    finally:
        engine("start")
    out, _ = run.communicate(timeout=300)
    assert run.returncode == 1, out
    assert "Traceback" not in out, out
    result = json.loads((cells / "sleepy" / "build.json").read_text())
    assert result["status"] == "failed"
    assert "lost the guest while running build.py: the Docker engine stopped, restarted or refused" in result["reason"]
    assert "[debian12/sleepy] build: failed" in out and "the Docker engine stopped" in out, out
    assert "debian12/calm" not in out.split("failures")[-1]  # the published cell was not touched
    manifest = json.loads((tmp_path / "p" / "eggs" / "debian12" / "manifest.json").read_text())
    assert list(manifest["cells"]) == ["debian12/calm"]
    # The rerun removes what the cut-off run left and finishes the work.
    done = builder(matrix, "all")
    assert done.returncode == 0, done.stdout + done.stderr
    assert containers(run.pid) == []
    manifest = json.loads((tmp_path / "p" / "eggs" / "debian12" / "manifest.json").read_text())
    assert sorted(manifest["cells"]) == ["debian12/calm", "debian12/sleepy"]
    checked = builder(matrix, "verify")
    assert checked.returncode == 0, checked.stdout + checked.stderr

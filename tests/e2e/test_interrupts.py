"""Ctrl-C or TERM stops the guests; a kill -9 leaves containers that the next run or `clean` removes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import docker.errors
import pytest

from .conftest import REPO, builder, project
from .sdists import containers

LABEL = "io.builder"


def _start(matrix: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "BUILDER_CACHE": str(REPO / ".builder" / "cache")}
    argv = [sys.executable, "-m", "builder", "all", "--force", "--cell", "debian12/psycopg2", "--matrix", str(matrix)]
    return subprocess.Popen(argv, cwd=matrix.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_container(proc: subprocess.Popen[str]) -> list[str]:
    """Wait for a guest of `proc`; the names of its volumes (they must go with it)."""
    deadline = time.monotonic() + 300
    while True:
        found = containers(proc.pid)
        if found:
            return [m["Name"] for c in found for m in c.attrs.get("Mounts", []) if m.get("Type") == "volume"]
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline, "no container started"
        time.sleep(0.2)


def _volumes(names: list[str]) -> list[str]:
    left = []
    for name in names:
        try:
            docker.from_env().volumes.get(name)
            left.append(name)
        except docker.errors.NotFound:
            pass
    return left


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "term"])
def test_ctrl_c_or_term_stops_the_running_guests(tmp_path: Path, signum: signal.Signals) -> None:
    matrix = project(tmp_path / "p", (REPO / "matrix.yaml").read_text())
    proc = _start(matrix)
    volumes = _wait_for_container(proc)
    assert volumes, "a guest's /builder is an anonymous volume"
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "interrupted: running containers were stopped" in out, out
    assert containers(proc.pid) == []
    assert _volumes(volumes) == []  # removed with their containers
    assert not (tmp_path / "p" / "eggs" / "debian12").exists()


def test_a_killed_run_leaves_nothing_that_clean_does_not_remove(tmp_path: Path) -> None:
    matrix = project(tmp_path / "p", (REPO / "matrix.yaml").read_text())
    proc = _start(matrix)
    _wait_for_container(proc)
    proc.kill()
    proc.wait(timeout=60)
    assert containers(proc.pid), "kill -9 cannot clean up: the container is still there"
    done = builder(matrix, "clean")
    assert done.returncode == 0, done.stdout + done.stderr
    assert containers(proc.pid) == []
    assert not (tmp_path / "p" / "eggs" / "debian12" / "manifest.json").exists()
    # The rerun completes the cell.
    done = builder(matrix, "all", "--cell", "debian12/psycopg2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "debian12/psycopg2" in json.loads((tmp_path / "p" / "eggs" / "debian12" / "manifest.json").read_text())["cells"]

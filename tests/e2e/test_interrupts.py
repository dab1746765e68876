"""Ctrl-C stops the guests; a kill -9 leaves containers that the next run or `clean` removes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .conftest import REPO, builder, project
from .sdists import containers

LABEL = "io.builder"


def _start(matrix: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "BUILDER_CACHE": str(REPO / ".builder" / "cache")}
    argv = [sys.executable, "-m", "builder", "all", "--force", "--cell", "debian12/psycopg2", "--matrix", str(matrix)]
    return subprocess.Popen(argv, cwd=matrix.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_container(proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 300
    while not containers(proc.pid):
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline, "no container started"
        time.sleep(0.2)


def test_ctrl_c_stops_the_running_guests(tmp_path: Path) -> None:
    matrix = project(tmp_path / "p", (REPO / "matrix.yaml").read_text())
    proc = _start(matrix)
    _wait_for_container(proc)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert containers(proc.pid) == []
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

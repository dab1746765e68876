"""A guarantee test that cannot run here skips on a developer's machine but fails under CI=true
(the engine-restart test's decision, taken without running it: it stops the Docker engine)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_engine_restart import verdict


@pytest.fixture
def pid_file(tmp_path: Path) -> Path:
    path = tmp_path / "docker.pid"
    path.write_text("1\n")
    return path


def test_runs_when_this_machine_has_its_own_engine(pid_file: Path) -> None:
    assert verdict({}, pid_file) is None
    assert verdict({"CI": "true"}, pid_file) is None


@pytest.mark.parametrize("environ, missing_pid, why", [
    ({"BUILDER_TEST_NO_ENGINE_RESTART": "1"}, False, "BUILDER_TEST_NO_ENGINE_RESTART is set"),
    ({"DOCKER_HOST": "tcp://127.0.0.1:2375"}, False, "DOCKER_HOST is set"),
    ({}, True, "docker.pid is missing"),
])
def test_skips_on_a_machine_but_fails_in_ci(pid_file: Path, environ: dict, missing_pid: bool, why: str) -> None:
    if missing_pid:
        pid_file.unlink()
    kind, reason = verdict(environ, pid_file) or ("", "")
    assert kind == "skip" and why in reason
    for ci in ("true", "True", "1"):
        kind, reason = verdict({**environ, "CI": ci}, pid_file) or ("", "")
        assert kind == "fail" and why in reason and "cannot be proven in CI" in reason
    assert (verdict({**environ, "CI": "false"}, pid_file) or ("",))[0] == "skip"

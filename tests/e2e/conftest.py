"""The real tier: a real Docker engine, real images, real sdists and real Python 2.7 and 3.11.

Base images are made once per machine (debootstrap + docker import) and platform images once
per set of inputs; downloads are cached in the repository's .builder/cache, so reruns are quick.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
SHIPPED_JUNIT = "shipped-run-junit.xml"  # the shipped fixture's report, in its project folder


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session", autouse=True)
def engine() -> None:
    import docker

    try:
        docker.from_env().ping()
    except Exception as exc:  # noqa: BLE001 - any failure means the same thing here
        pytest.fail(f"the end-to-end tier needs a running Docker engine ({exc}); ./bootstrap.sh starts one")


def builder(matrix: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 3000) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, from the matrix's folder."""
    full_env = {**os.environ, "BUILDER_CACHE": str(REPO / ".builder" / "cache"), "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "builder", *args, "--matrix", str(matrix)],
        cwd=matrix.parent, env=full_env, capture_output=True, text=True, timeout=timeout, check=False,
    )


def project(tmp: Path, matrix_text: str, images: Path = REPO / "images") -> Path:
    """A user's project folder: matrix.yaml, an images/ folder and the Vagrantfile."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "images").symlink_to(images, target_is_directory=True)
    (tmp / "Vagrantfile").symlink_to(REPO / "Vagrantfile")
    path = tmp / "matrix.yaml"
    path.write_text(matrix_text)
    return path


@pytest.fixture(scope="session")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One real `builder all` of the shipped matrix into a temporary project, shared by the tests
    that read what it published: (project folder, its output)."""
    matrix = project(tmp_path_factory.mktemp("shipped"), (REPO / "matrix.yaml").read_text())
    done = builder(matrix, "all")
    assert done.returncode == 0, done.stdout + done.stderr
    # Its own junit report, kept aside: later runs in the same project (a warm run, verify
    # --rebuild of some platforms) write theirs over the work folder's.
    report = matrix.parent / ".builder" / "work" / "report" / "junit.xml"
    (matrix.parent / SHIPPED_JUNIT).write_bytes(report.read_bytes())
    return matrix.parent, done.stdout


def docker_run(image: str, script: str, *volumes: str) -> subprocess.CompletedProcess[str]:
    argv = ["docker", "run", "--rm", "--network", "none"]
    for volume in volumes:
        argv += ["-v", volume]
    return subprocess.run([*argv, image, "sh", "-c", script], capture_output=True, text=True, timeout=600, check=False)


def in_terminal(argv: list[str], cwd: Path, answer: tuple[bytes, bytes] | None = None, timeout: float = 600) -> tuple[int, str]:
    """Run argv on a pseudo-terminal, as a person at a terminal would; when `answer` is given,
    type its second part once the screen shows its first. Returns (exit code, screen)."""
    import pty
    import time

    env = {**os.environ, "BUILDER_CACHE": str(REPO / ".builder" / "cache"), "COLUMNS": "120", "TERM": "xterm"}
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(cwd)
        os.execvpe(argv[0], argv, env)
    screen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
        if answer and answer[0] in screen:
            os.write(fd, answer[1])
            answer = None
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), screen.decode("utf-8", "replace")

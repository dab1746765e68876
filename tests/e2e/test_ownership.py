"""Artifacts the guest (uid 65534) wrote are owned on the host by the user who ran builder: under
sudo, by the user who ran sudo, not by root."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from .conftest import builder, project
from .sdists import CALM, entry, matrix_text, sdist

UID, GID = 4242, 4343  # a user that exists nowhere: nothing else on this machine owns files as it


def owners(folder: Path) -> set[tuple[int, int]]:
    return {(p.lstat().st_uid, p.lstat().st_gid) for p in [folder, *folder.rglob("*")]}


def test_under_sudo_what_builder_writes_belongs_to_the_invoking_user(tmp_path: Path) -> None:
    assert os.geteuid() == 0, "this test plays sudo: it must run as root"
    calm = entry("calm", *sdist(tmp_path / "src", "calm", CALM))
    matrix = project(tmp_path / "p", matrix_text(calm))
    done = builder(matrix, "all", env={"SUDO_UID": str(UID), "SUDO_GID": str(GID), "SUDO_USER": "someone"})
    assert done.returncode == 0, done.stdout + done.stderr
    built = tmp_path / "p" / ".builder" / "work" / "cells" / "debian12" / "calm" / "build"
    assert (built / "calm-1.0-py3.11.egg").is_file() and (built / "build-result.json").is_file()
    assert owners(built) == {(UID, GID)}  # what the guest wrote: not 65534, not root
    assert owners(tmp_path / "p" / "eggs") == {(UID, GID)}
    assert owners(tmp_path / "p" / ".builder") == {(UID, GID)}
    # What the user's own files were, they stay; and without sudo, root keeps what it makes.
    assert (tmp_path / "p" / "matrix.yaml").stat().st_uid == 0
    plain = project(tmp_path / "q", matrix_text(calm))
    done = builder(plain, "all", env={"SUDO_UID": "", "SUDO_GID": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    assert owners(tmp_path / "q" / "eggs") == {(0, 0)}


def test_a_user_in_the_docker_group_owns_what_the_guest_wrote(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The docker backend's copy-out, run by a plain user who reaches the Docker socket through
    its group, from a real guest where uid 65534 wrote the files.

    The user's side runs in a child forked from this process once everything it needs is
    imported: another user may not be able to read this interpreter's own files."""
    import docker

    from builder.machines.docker import GUEST_USER, LABEL, DockerMachine

    engine = docker.from_env()
    container = engine.containers.run(
        "builder/base:bookworm", ["sleep", "600"], detach=True, network_mode="none",
        labels={LABEL: "test", f"{LABEL}.pid": str(os.getpid())},
    )
    request.addfinalizer(lambda: container.remove(force=True))
    made = container.exec_run(["sh", "-c", "mkdir /tmp/out && echo built > /tmp/out/a.egg && ls -ln /tmp/out"],
                              user=GUEST_USER)
    assert made.exit_code == 0 and b" 65534 65534 " in made.output, made.output
    machine = DockerMachine(container)
    machine.copy_out("/tmp/out", tmp_path / "as-root")  # root runs builder: root owns, not 65534
    assert owners(tmp_path / "as-root") == {(0, 0)}
    home = Path(tempfile.mkdtemp(prefix="builder-user-"))  # outside pytest's root-only folders
    request.addfinalizer(lambda: shutil.rmtree(home, ignore_errors=True))
    os.chown(home, UID, GID)
    socket_gid = os.stat("/var/run/docker.sock").st_gid
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            os.setgroups([socket_gid])
            os.setgid(GID)
            os.setuid(UID)
            # A new connection, made as the user: the socket is reachable through its group only.
            DockerMachine(docker.from_env().containers.get(container.id)).copy_out("/tmp/out", home / "out")
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert (home / "out" / "a.egg").read_text() == "built\n"
    assert owners(home / "out") == {(UID, GID)}

"""The vagrant backend for real: Vagrant 2.3.4 and its docker provider (no box needed) bring up
the Vagrantfile's debian12-vm machines; builder reaches them over ssh.

A real C-extension egg is built on the build machine and tested toolless on the runtime machine
through the command line; then the isolation a cell gets on a shared machine is proven on a pair
of machines driven in-process, and a person's shell into one of them. FreeBSD's box cannot be
had here, and builder says so before anything starts.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from builder.machines import registry as backends
from builder.machines.engine import listed
from builder.matrix import load as config
from builder.matrix.model import Limits

from .conftest import REPO, builder, in_terminal, project
from .sdists import containers

SHIPPED = (REPO / "matrix.yaml").read_text()


@pytest.fixture(scope="module", autouse=True)
def bookworm_base(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The debian12-vm image starts FROM the bookworm base: make it if this machine lacks it."""
    try:
        docker.from_env().images.get("builder/base:bookworm")
    except docker.errors.ImageNotFound:
        made = builder(project(tmp_path_factory.mktemp("base"), SHIPPED), "images", "--platform", "debian12")
        assert made.returncode == 0, made.stdout + made.stderr


def _machines_of(folder: Path) -> list[str]:
    """Containers Vagrant made for a project: it names them <project folder>_<machine>_<time>."""
    names = [c.name for c in listed(docker.from_env(), label="io.builder=vagrant")]
    return [n for n in names if n.startswith(folder.name + "_")]


def test_an_egg_is_built_and_tested_toolless_on_vagrant_machines(tmp_path: Path) -> None:
    matrix = project(tmp_path / "vm", SHIPPED)
    started = time.monotonic()
    done = builder(matrix, "all", "--cell", "debian12-vm/simplejson")
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[debian12-vm/simplejson] test: passed" in done.stdout, done.stdout
    eggs = list((matrix.parent / "eggs" / "debian12-vm").glob("simplejson-3.19.3-py3.11-linux-x86_64.egg"))
    assert eggs, done.stdout
    cell = matrix.parent / ".builder" / "work" / "cells" / "debian12-vm" / "simplejson"
    checked = json.loads((cell / "test" / "egg" / "check-result.json").read_text())
    # Toolless on the runtime machine, and the speedups loaded as a real extension there.
    assert checked["ok"] and checked["compilers"] == [] and checked["build_only_installed"] == []
    assert checked["extensions"] == {"simplejson._speedups": "extension"}
    # The wheel went in with the platform's prepared pip, unpacked in this cell's own folder.
    wheel = json.loads((cell / "test" / "wheel" / "check-result.json").read_text())
    assert wheel["ok"] and wheel["installer"] == "pip (from pip-24.2-py3-none-any.whl, unpacked)", wheel["installer"]
    assert wheel["environment"].startswith("venv --without-pip (made once"), wheel["environment"]
    # The cell ran in its own folder on the machine, not in the ssh user's home.
    assert "/var/tmp/builder/bc" in (cell / "build.log").read_text()
    # The run's machines are gone with it.
    assert _machines_of(matrix.parent) == []
    print(f"vagrant cell: {took:.1f} s")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, object, object, Path]]:
    root = tmp_path_factory.mktemp("fleet")
    matrix = config.load(project(root, SHIPPED))
    platform = matrix.platform("debian12-vm")
    backend = backends.get("vagrant")
    backend.check(matrix, platform)
    images = backend.prepare(matrix, platform, {}, print)
    yield backend, platform, images, root
    fleet = backend._fleets[platform.name]  # type: ignore[attr-defined]
    fleet.keep = False
    fleet.down()


def test_cells_sharing_a_machine_are_separate_unprivileged_users(fleet: tuple, tmp_path: Path) -> None:
    backend, platform, images, _ = fleet
    limits = Limits(memory="1g", pids=64, timeout=60)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "given.txt").write_text("read-only input\n")
    with backend.machine(platform, images, "build", limits, "a") as a, backend.machine(platform, images, "build", limits, "b") as b:
        a.copy_in(inputs, "/builder")
        # (Paths a cell is given are mapped into its folder: here through the environment.)
        paths = {"W": "/tmp/builder-work", "G": "/builder/given.txt"}
        wrote = a.run(["sh", "-c", 'echo secret > "$W/mine" && cat "$G"'], env=paths)
        assert wrote.output == "read-only input\n", wrote
        users = {a.run(["id", "-un"]).output.strip(), b.run(["id", "-un"]).output.strip()}
        assert len(users) == 2 and all(u.startswith("bc") for u in users), users
        # b cannot enter a's folder, nor read its work; a cannot change its own inputs.
        peek = b.run(["cat", f"{a.root}/work/mine"])
        assert peek.returncode != 0 and "Permission denied" in peek.output, peek
        assert b.run(["ls", a.root]).returncode != 0
        assert a.run(["sh", "-c", 'echo x >> "$G"'], env=paths).returncode != 0
        # No way up: the ssh user's sudo is not the cell's.
        assert a.run(["sudo", "-n", "true"]).returncode != 0
        limit = a.run(["python3", "-c", "import resource as r; print(r.getrlimit(r.RLIMIT_NPROC)[0], r.getrlimit(r.RLIMIT_AS)[0])"])
        assert limit.output.split() == ["64", str(1024**3)], limit
        # What the README says this backend gives in place of docker's lockdown, each checked:
        # the system is read-only by file modes (EACCES, not docker's EROFS), the cell's user has
        # an empty effective capability set, and an allocation past limits.memory fails in the
        # cell's own process (ulimit -v) instead of being allowed.
        usr = a.run(["python3", "-c", "import errno\ntry:\n open('/usr/lib/x', 'w')\nexcept OSError as e: print(errno.errorcode[e.errno])"])
        assert usr.output.strip() == "EACCES", usr
        caps = a.run(["sh", "-c", "grep '^CapEff' /proc/self/status"])
        assert caps.output.split() == ["CapEff:", "0000000000000000"], caps
        big = a.run(["python3", "-c", "b = bytearray(2 * 1024**3)"])
        assert big.returncode != 0 and "MemoryError" in big.output, big
        # The time limit ends the cell's processes, including those it left in the background.
        started = time.monotonic()
        stopped = a.run(["sh", "-c", "sleep 600 & sleep 600"], timeout=3)
        assert stopped.timed_out and time.monotonic() - started < 30
        left = a.run(["pgrep", "-U", a.user], user="root")
        assert left.returncode == 1 and left.output.strip() == "", left
        user, folder = a.user, a.root
    # The cell's user and folder are gone with it.
    with backend.machine(platform, images, "build", limits, "c") as c:
        assert c.run(["id", user], user="root").returncode != 0
        assert c.run(["test", "-e", folder], user="root").returncode != 0


def test_a_shell_is_a_cell_of_its_own_and_the_machines_go_when_it_ends(fleet: tuple, tmp_path: Path) -> None:
    backend, platform, images, root = fleet
    stage = tmp_path / "stage"
    (stage / "out").mkdir(parents=True)
    (stage / "spec.json").write_text(json.dumps({"sdist": "/builder/in/x.tar.gz"}))
    argv = backend.interactive(platform, images, "runtime", {str(stage): "/builder"}, {"HOME": "/tmp"})
    assert "ssh" in argv and "-t" in argv, argv
    # What a person types, on the shell's standard input (the pseudo-terminal path is test_shell's).
    done = subprocess.run(argv, input="id -un; cat spec.json; touch out/made && echo WROTE; command -v gcc cc || echo NO-CC\nexit\n",
                          capture_output=True, text=True, timeout=300, check=False)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "bc" in out and "/var/tmp/builder/bc" in out and "WROTE" in out and "NO-CC" in out, out
    assert _machines_of(root) == [], "the shell's machines were not destroyed when it ended"


def test_a_missing_freebsd_box_stops_the_run_at_once_saying_how_to_add_it(tmp_path: Path) -> None:
    matrix = project(tmp_path / "bsd", SHIPPED)
    started = time.monotonic()
    done = builder(matrix, "all", "--platform", "freebsd", env={"BUILDER_FREEBSD_BOX": "builder-test/no-such-box"})
    assert done.returncode == 5, done.stdout + done.stderr
    assert time.monotonic() - started < 120
    assert "Traceback" not in done.stderr and "fetch" not in done.stdout, done.stdout + done.stderr
    assert "the Vagrant box builder-test/no-such-box of platform freebsd is not on this machine" in done.stderr
    assert "vagrant box add builder-test/no-such-box" in done.stderr and "BUILDER_FREEBSD_BOX" in done.stderr
    assert not (matrix.parent / "eggs").exists()


def test_ctrl_c_takes_the_runs_machines_with_it(tmp_path: Path) -> None:
    matrix = project(tmp_path / "int", SHIPPED)
    env = {**os.environ, "BUILDER_CACHE": str(REPO / ".builder" / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "builder", "all", "--cell", "debian12-vm/six", "--matrix", str(matrix)],
                            cwd=matrix.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def ours() -> list:
        return containers(proc.pid)

    deadline = time.monotonic() + 300
    while len(ours()) < 2:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline, "the machines did not come up"
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 130, out
    assert ours() == [] and _machines_of(matrix.parent) == []


def test_builder_shell_puts_a_person_in_a_cells_guest_on_the_machine(tmp_path: Path) -> None:
    matrix = project(tmp_path / "sh", SHIPPED)
    # A person at a terminal: builder's process becomes the shell (so its machines keep their
    # owner's pid alive until the shell ends).
    argv = [sys.executable, "-m", "builder", "shell", "debian12-vm/six", "--matrix", str(matrix)]
    typed = b"id -un; python3 -c 'import json; print(json.load(open(\"spec.json\"))[\"sdist\"])'; touch out/x && echo WROTE-$((6*7)); exit\n"
    code, screen = in_terminal(argv, matrix.parent, (b"$ ", typed), timeout=300)
    assert code == 0, screen
    user = next(w for w in screen.split() if w.startswith("bc") and w[2:].isalnum())
    # The cell's spec names its own folder on the machine, where the source was copied.
    assert f"/var/tmp/builder/{user}/builder/in/six-1.16.0.tar.gz" in screen and "WROTE-42" in screen, screen
    assert _machines_of(matrix.parent) == []

"""The vagrant backend's pure parts: path mapping into a cell's folder, limits, the limited
command on the shells the machines have, and the shell command a person gets."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.machines import base, vagrant
from builder.machines import registry as backends
from builder.machines.base import GUEST_ROOT, GUEST_WORK
from builder.machines.vagrant import cell as vagrant_cell
from builder.matrix.model import Limits


def test_guest_paths_map_into_the_cells_folder_and_nothing_else_does() -> None:
    root = "/var/tmp/builder/bc0123abcd"
    assert vagrant_cell.translate(GUEST_ROOT, root) == f"{root}/builder"
    assert vagrant_cell.translate(f"{GUEST_ROOT}/guest/build.py", root) == f"{root}/builder/guest/build.py"
    assert vagrant_cell.translate(f"{GUEST_WORK}/home", root) == f"{root}/work/home"
    for untouched in ("/usr/bin/python3", "/builderx", "/tmp/builder-workshop", "-c", "C.UTF-8"):
        assert vagrant_cell.translate(untouched, root) == untouched


def test_a_spec_is_mapped_everywhere_it_names_a_guest_path() -> None:
    spec = {"sdist": "/builder/in/six.tar.gz", "work": "/tmp/builder-work", "deps": ["/builder/deps/a.egg"],
            "env": {"X": "/builder/tools"}, "extensions": None, "formats": ["egg"], "count": 2}
    mapped = vagrant_cell.translate_spec(spec, "/r")
    assert mapped == {"sdist": "/r/builder/in/six.tar.gz", "work": "/r/work", "deps": ["/r/builder/deps/a.egg"],
                      "env": {"X": "/r/builder/tools"}, "extensions": None, "formats": ["egg"], "count": 2}


@pytest.mark.parametrize("text, kib", [("2g", 2 * 1024 * 1024), ("512m", 512 * 1024), ("1536K", 1536), ("1gb", 1024 * 1024),
                                       ("1048576", 1024)])
def test_memory_limits_become_kib_for_ulimit(text: str, kib: int) -> None:
    assert vagrant_cell.memory_kb(text) == kib


@pytest.mark.parametrize("shell", ["sh", "bash", "dash"])
def test_the_limited_command_sets_both_limits_on_each_shell(shell: str) -> None:
    """dash (Debian's sh) spells the process limit -p, bash and FreeBSD's sh -u."""
    if shutil.which(shell) is None:
        pytest.skip(f"no {shell} here")
    done = subprocess.run(
        [shell, "-c", vagrant_cell.LIMITED, "sh", "77", "3000000", "sh", "-c", "ulimit -v; pwd"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3000000", "/"]
    nproc = subprocess.run([shell, "-c", vagrant_cell.LIMITED, "sh", "77", "3000000", "python3", "-c",
                            "import resource; print(resource.getrlimit(resource.RLIMIT_NPROC)[0])"],
                           capture_output=True, text=True, timeout=30, check=False)
    assert nproc.stdout.strip() == "77", nproc.stderr


def test_the_backend_is_one_per_process_so_machines_outlive_a_cell() -> None:
    assert backends.get("vagrant") is backends.get("vagrant")
    assert set(backends.FACTORIES) == {"docker", "vagrant"}


def test_a_copied_in_spec_names_the_cells_folder(tmp_path: Path) -> None:
    """copy_in rewrites spec.json on the way in and leaves the host's staged copy as it was."""
    staged = tmp_path / "stage"
    (staged / "in").mkdir(parents=True)
    (staged / "in" / "six.tar.gz").write_bytes(b"sdist")
    (staged / "spec.json").write_text(json.dumps({"sdist": "/builder/in/six.tar.gz", "work": "/tmp/builder-work"}))
    sent: dict[str, object] = {}

    class Wire:
        dest = type("D", (), {"user": "vagrant"})()

        def put(self, src: Path, dest: str) -> None:
            sent["dest"] = dest
            sent["spec"] = json.loads((src / "spec.json").read_text())
            sent["sdist"] = (src / "in" / "six.tar.gz").read_bytes()

        def run(self, argv: list[str], **kwargs: object) -> base.Exec:
            sent.setdefault("runs", []).append(argv)  # type: ignore[union-attr]
            return base.Exec(0, "")

    machine = vagrant_cell.VagrantMachine(Wire(), "bc00000001", Limits())  # type: ignore[arg-type]
    machine.copy_in(staged, "/builder")
    root = "/var/tmp/builder/bc00000001"
    assert sent["dest"] == f"{root}/builder" and sent["sdist"] == b"sdist"
    assert sent["spec"] == {"sdist": f"{root}/builder/in/six.tar.gz", "work": f"{root}/work"}
    assert json.loads((staged / "spec.json").read_text())["sdist"] == "/builder/in/six.tar.gz"
    assert ["chmod", "-R", "a+rX,go-w", f"{root}/builder"] in sent["runs"]  # type: ignore[operator]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".vagrant-")]
    # A cell's command runs as its own user, in its limits, with its paths mapped.
    machine.run(["/usr/bin/python3", "/builder/guest/build.py", "/builder/spec.json"], env={"HOME": "/tmp/builder-work/home"})
    argv = sent["runs"][-1]  # type: ignore[index]
    assert argv[:5] == ["sudo", "-n", "-u", "bc00000001", "--"] and f"HOME={root}/work/home" in argv
    assert argv[-3:] == ["/usr/bin/python3", f"{root}/builder/guest/build.py", f"{root}/builder/spec.json"]
    assert argv[argv.index(vagrant_cell.LIMITED) + 2: argv.index(vagrant_cell.LIMITED) + 4] == ["1024", str(2 * 1024 * 1024)]


def test_ctrl_c_finds_the_commands_a_run_waits_on_down_to_grandchildren() -> None:
    """vagrant runs docker and ssh: stopping only vagrant would leave them creating machines."""
    child = subprocess.Popen(["sh", "-c", "sleep 30 & wait"])
    try:
        import time

        deadline = time.monotonic() + 10
        while True:
            found = vagrant_cell._descendants(os.getpid())
            grandchildren = [p for p in found if p != child.pid]
            if child.pid in found and grandchildren or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert child.pid in found and grandchildren, found
    finally:
        child.kill()
        child.wait()


def test_vagrant_is_asked_for_the_machines_once_per_vagrantfile_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asking Vagrant costs about 2 s, most of a warm run: the answer is kept until the
    Vagrantfile or the environment it reads changes."""
    (tmp_path / "Vagrantfile").write_text("# one\n")
    project = vagrant._Project(root=tmp_path, work=tmp_path / "work", key=tmp_path / "work" / "key")
    backend = vagrant.VagrantBackend()
    asked: list[int] = []

    def ask(_: object) -> dict[str, dict[str, object]]:
        asked.append(1)
        return {"vm-build": {"box": None}, "vm-runtime": {"box": None}}

    monkeypatch.setattr(backend, "_ask_vagrant", ask)
    monkeypatch.delenv("BUILDER_FREEBSD_BOX", raising=False)
    first = backend._describe(project, None)  # type: ignore[arg-type]
    assert backend._describe(project, None) == first  # type: ignore[arg-type]
    assert len(asked) == 1
    (tmp_path / "Vagrantfile").write_text("# two\n")
    backend._describe(project, None)  # type: ignore[arg-type]
    monkeypatch.setenv("BUILDER_FREEBSD_BOX", "my/box")
    backend._describe(project, None)  # type: ignore[arg-type]
    assert len(asked) == 3
    assert sorted(first) == ["vm-build", "vm-runtime"]

"""One cell's build and test through a fake machine: what the host makes of what a guest did.

The backend is handed in (as the pipeline hands in the run's backends), so these need no Docker:
the fake machine keeps the guest's folders in a temporary directory, and each test says what
the guest script leaves in its out/ folder. The real guests are proven in tests/e2e/.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from builder.cells import cell as cells
from builder.cells.state import StageResult, cell_dir
from builder.errors import OutputTooLarge
from builder.machines.base import Exec, Images, Role
from builder.matrix.load import loads
from builder.matrix.model import Limits, Matrix, Platform
from builder.matrix.plan import Cell, all_cells

MATRIX = """\
settings: {output: out/eggs, work: out/work, cache: out/cache}
platforms:
  - name: debian12
    family: debian
    base: {debootstrap: bookworm}
    python: /usr/bin/python3
packages:
  - name: PyYAML
    version: "6.0.2"
    sha256: %s
    formats: [egg]
    system:
      debian: {build: [libyaml-dev], runtime: [libyaml-0-2]}
""" % ("a" * 64)

Guest = Callable[[Path, Sequence[str], Mapping[str, object]], Exec]


class FakeMachine:
    """A guest whose filesystem is a folder; `guest` plays the script the host runs."""

    def __init__(self, root: Path, guest: Guest, refuse_output: bool) -> None:
        self.root, self.guest, self.refuse_output = root, guest, refuse_output
        self.argvs: list[list[str]] = []

    def path(self, guest_path: str) -> Path:
        return self.root / guest_path.lstrip("/")

    def run(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, user: str | None = None,
            timeout: float | None = None, log: Callable[[str], None] | None = None) -> Exec:
        self.argvs.append(list(argv))
        if argv[1].endswith("/server/host.py"):  # the runtime image's fingerprint: this machine's real answer
            done = subprocess.run([sys.executable, str(self.path(argv[1])), *argv[2:]], capture_output=True, text=True,
                                  check=False)
            return Exec(done.returncode, done.stdout + done.stderr)
        spec = json.loads(self.path(argv[-1]).read_text())
        return self.guest(self.path("/builder/out"), argv, spec)

    def copy_in(self, src: Path, dest: str, *, writable: bool = False, mkdirs: Sequence[str] = ()) -> None:
        shutil.copytree(src, self.path(dest), dirs_exist_ok=True)
        for folder in mkdirs:
            self.mkdir(folder)

    def copy_out(self, src: str, dest: Path) -> None:
        if self.refuse_output:
            raise OutputTooLarge(src, Limits().output_bytes)
        shutil.copytree(self.path(src), dest, dirs_exist_ok=True)

    def mkdir(self, path: str) -> None:
        self.path(path).mkdir(parents=True, exist_ok=True)


class FakeBackend:
    same_paths = True

    def __init__(self, root: Path, guest: Guest, refuse_output: bool = False) -> None:
        self.root, self.guest, self.refuse_output = root, guest, refuse_output
        self.started: list[tuple[Role, str]] = []

    def check(self, matrix: Matrix, platform: Platform) -> None: ...

    def prepare(self, matrix: Matrix, platform: Platform, files: Mapping[str, Path], log: Callable[[str], None]) -> Images:
        return Images("build-id", "runtime-id")

    @contextmanager
    def machine(self, platform: Platform, images: Images, role: Role, limits: Limits, label: str) -> Iterator[FakeMachine]:
        self.started.append((role, label))
        folder = self.root / f"guest-{len(self.started)}"
        folder.mkdir()
        yield FakeMachine(folder, self.guest, self.refuse_output)

    def leftovers(self, platforms: object = ()) -> list[str]:
        return []

    def interactive(self, platform: Platform, images: Images, role: Role, mounts: Mapping[str, str],
                    env: Mapping[str, str]) -> list[str]:
        return ["true"]


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Matrix, Cell, dict[str, Path]]:
    matrix = loads(MATRIX, tmp_path / "matrix.yaml")
    cell = next(iter(all_cells(matrix)))
    cell_dir(matrix.settings.folders, cell).mkdir(parents=True)  # as the build stage leaves it
    sdist = tmp_path / "PyYAML-6.0.2.tar.gz"
    sdist.write_bytes(b"an sdist")
    return matrix, cell, {cell.spec.source.sha256: sdist}


def result(out: Path, name: str, data: dict[str, object]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(json.dumps(data))


def built_egg(out: Path, argv: Sequence[str], spec: Mapping[str, object]) -> Exec:
    assert argv[1] == "/builder/guest/build.py" and spec["sdist"] == "/builder/in/PyYAML-6.0.2.tar.gz"
    (out / "PyYAML-6.0.2-py3.11-linux-x86_64.egg").write_bytes(b"an egg")
    result(out, "build-result.json", {"ok": True, "artifacts": [{"filename": "PyYAML-6.0.2-py3.11-linux-x86_64.egg"}]})
    return Exec(0, "built")


def test_a_build_that_passes_hands_back_its_artifact(tmp_path: Path, setup: tuple[Matrix, Cell, dict[str, Path]]) -> None:
    matrix, cell, sources = setup
    backend = FakeBackend(tmp_path, built_egg)
    done = cells.build(backend, matrix, cell, Images("b", "r"), sources)
    assert done.status == "passed", done.reason
    assert [Path(a).name for a in done.artifacts] == ["PyYAML-6.0.2-py3.11-linux-x86_64.egg"]
    assert Path(done.artifacts[0]).read_bytes() == b"an egg"
    assert backend.started == [("build", "debian12/pyyaml")]


def test_a_failing_build_gives_the_guests_own_reason(tmp_path: Path, setup: tuple[Matrix, Cell, dict[str, Path]]) -> None:
    matrix, cell, sources = setup

    def fails(out: Path, argv: Sequence[str], spec: Mapping[str, object]) -> Exec:
        result(out, "build-result.json", {"ok": False, "error": "setup.py bdist_egg exited 1: yaml.h: No such file"})
        return Exec(1, "")

    done = cells.build(FakeBackend(tmp_path, fails), matrix, cell, Images("b", "r"), sources)
    assert done.status == "failed" and done.artifacts == []
    assert done.reason == "build failed: setup.py bdist_egg exited 1: yaml.h: No such file"


def test_a_build_that_leaves_no_result_says_how_the_script_ended(tmp_path: Path, setup: tuple[Matrix, Cell, dict[str, Path]]) -> None:
    matrix, cell, sources = setup
    done = cells.build(FakeBackend(tmp_path, lambda out, argv, spec: Exec(139, "")), matrix, cell, Images("b", "r"), sources)
    assert done.status == "failed" and done.reason == "build failed: build.py exited 139"


def test_a_timed_out_build_names_the_limit(tmp_path: Path, setup: tuple[Matrix, Cell, dict[str, Path]]) -> None:
    matrix, cell, sources = setup
    done = cells.build(FakeBackend(tmp_path, lambda out, argv, spec: Exec(-9, "", timed_out=True)), matrix, cell,
                       Images("b", "r"), sources)
    assert done.status == "failed" and done.reason == "build stopped after 1800 s (limits.timeout)"


def test_a_refused_output_fails_the_cell_and_keeps_nothing(tmp_path: Path, setup: tuple[Matrix, Cell, dict[str, Path]]) -> None:
    matrix, cell, sources = setup
    done = cells.build(FakeBackend(tmp_path, built_egg, refuse_output=True), matrix, cell, Images("b", "r"), sources)
    assert done.status == "failed" and done.artifacts == []
    assert done.reason.startswith("build could not run: the guest's /builder/out is over limits.output (1024 MiB)")
    assert not any((Path(done.log).parent / "build").iterdir())


def egg(tmp_path: Path) -> StageResult:
    path = tmp_path / "PyYAML-6.0.2-py3.11-linux-x86_64.egg"
    path.write_bytes(b"an egg")
    return StageResult("debian12/pyyaml", "build", "passed", artifacts=[str(path)])


def test_a_passing_check_passes_the_cell(tmp_path: Path, setup: tuple[Matrix, Cell, dict[str, Path]]) -> None:
    matrix, cell, sources = setup

    def checks(out: Path, argv: Sequence[str], spec: Mapping[str, object]) -> Exec:
        assert argv[1] == "/builder/guest/check.py"
        assert spec["items"] == [{"artifact": "/builder/in/PyYAML-6.0.2-py3.11-linux-x86_64.egg", "format": "egg",
                                  "deps": [], "out": "/builder/out/egg"}]
        assert spec["build_only"] == ["libyaml-dev"] and spec["family"] == "debian"
        result(out / "egg", "check-result.json", {"ok": True})
        return Exec(0, "")

    backend = FakeBackend(tmp_path, checks)
    done = cells.test(backend, matrix, cell, Images("b", "r"), egg(tmp_path), {}, sources)
    assert done.status == "passed", done.reason
    assert backend.started == [("runtime", "debian12/pyyaml")]


def test_a_missing_library_names_the_matrix_key_to_change(tmp_path: Path, setup: tuple[Matrix, Cell, dict[str, Path]],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    matrix, cell, sources = setup
    monkeypatch.setattr(cells, "LOOKUP", lambda platform, sonames: {})  # the index could not be asked

    def lacks_libyaml(out: Path, argv: Sequence[str], spec: Mapping[str, object]) -> Exec:
        result(out / "egg", "check-result.json", {
            "ok": False, "missing_libraries": {"yaml/_yaml.so": ["libyaml-0.so.2"]},
            "reasons": ["ldd: yaml/_yaml.so needs libyaml-0.so.2 (not found)"],
        })
        return Exec(1, "")

    done = cells.test(FakeBackend(tmp_path, lacks_libyaml), matrix, cell, Images("b", "r"), egg(tmp_path), {}, sources)
    assert done.status == "failed"
    assert done.reason == (
        "yaml/_yaml.so needs libyaml-0.so.2, which the debian12 runtime image lacks: add the OS package providing it "
        "to packages[PyYAML].system.debian.runtime in matrix.yaml"
    )


def test_a_missing_library_names_the_os_package_the_platform_index_gives(
    tmp_path: Path, setup: tuple[Matrix, Cell, dict[str, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    matrix, cell, sources = setup
    asked: list[tuple[str, set[str]]] = []

    def lookup(platform: object, sonames: set[str]) -> dict[str, str]:
        asked.append((getattr(platform, "name"), set(sonames)))  # noqa: B009
        return {"libyaml-0.so.2": "libyaml-0-2"}

    monkeypatch.setattr(cells, "LOOKUP", lookup)

    def lacks_libyaml(out: Path, argv: Sequence[str], spec: Mapping[str, object]) -> Exec:
        result(out / "egg", "check-result.json", {"ok": False, "missing_libraries": {"yaml/_yaml.so": ["libyaml-0.so.2"]}})
        return Exec(1, "")

    done = cells.test(FakeBackend(tmp_path, lacks_libyaml), matrix, cell, Images("b", "r"), egg(tmp_path), {}, sources)
    assert asked == [("debian12", {"libyaml-0.so.2"})]
    assert done.reason == (
        "yaml/_yaml.so needs libyaml-0.so.2, which the debian12 runtime image lacks: add the OS package providing it "
        "(libyaml-0-2 on debian12) to packages[PyYAML].system.debian.runtime in matrix.yaml"
    )


def test_a_dependency_whose_build_failed_is_never_tested_against(tmp_path: Path, setup: tuple[Matrix, Cell, dict[str, Path]]) -> None:
    matrix, cell, sources = setup
    backend = FakeBackend(tmp_path, lambda out, argv, spec: pytest.fail("no guest should start"))
    failed = StageResult("debian12/six", "build", "failed", reason="build failed")
    done = cells.test(backend, matrix, cell, Images("b", "r"), egg(tmp_path), {"debian12/six": failed}, sources)
    assert done.status == "failed" and done.reason == "needs debian12/six, whose build failed"
    assert backend.started == []


def test_a_reason_names_the_matrix_file_as_it_was_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from builder.matrix.load import load

    (tmp_path / "cases").mkdir()
    (tmp_path / "cases" / "x.yaml").write_text(MATRIX)
    monkeypatch.chdir(tmp_path)
    matrix = load("cases/x.yaml")
    cell = next(iter(all_cells(matrix)))
    cell_dir(matrix.settings.folders, cell).mkdir(parents=True)

    def lacks_libyaml(out: Path, argv: Sequence[str], spec: Mapping[str, object]) -> Exec:
        result(out / "egg", "check-result.json", {"ok": False, "missing_libraries": {"yaml/_yaml.so": ["libyaml-0.so.2"]}})
        return Exec(1, "")

    done = cells.test(FakeBackend(tmp_path, lacks_libyaml), matrix, cell, Images("b", "r"), egg(tmp_path), {}, {})
    assert done.reason.endswith("to packages[PyYAML].system.debian.runtime in cases/x.yaml"), done.reason

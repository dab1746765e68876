"""The docker backend without an engine: copy_out driven with the tar stream get_archive gives
(a refused member keeps nothing of the copy, whatever came before it in the archive), and the
time limit's kill when the engine refuses it."""
from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker.errors
import pytest

from builder.errors import BuilderError, EngineError, OutputTooLarge
from builder.machines import docker as docker_backend
from builder.machines.docker import DockerMachine


def archive(*members: tuple[str, bytes, str]) -> bytes:
    """A tar of the guest folder `out` as docker's get_archive sends it: (name, data, link)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        top = tarfile.TarInfo("out")
        top.type, top.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(top)
        for name, data, link in members:
            info = tarfile.TarInfo(f"out/{name}")
            if link:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class Container:
    """What copy_out uses of a docker SDK container: get_archive's chunked stream."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def get_archive(self, path: str) -> tuple[Iterator[bytes], dict]:
        def chunks() -> Iterator[bytes]:
            for start in range(0, len(self.data), 4096):
                yield self.data[start:start + 4096]

        return chunks(), {}


def copy_out(data: bytes, dest: Path, max_output: int | None = None) -> None:
    DockerMachine(Container(data), max_output=max_output).copy_out("/builder/out", dest)  # type: ignore[arg-type]


def test_the_folder_contents_land_in_dest(tmp_path: Path) -> None:
    dest = tmp_path / "build"
    dest.mkdir()
    copy_out(archive(("a.egg", b"egg", ""), ("sub/b.txt", b"b", ""), ("link", b"", "a.egg")), dest)
    assert (dest / "a.egg").read_bytes() == b"egg" and (dest / "sub" / "b.txt").read_bytes() == b"b"
    assert (dest / "link").is_symlink()
    assert [p.name for p in tmp_path.iterdir()] == ["build"]  # no spool folder left beside it


@pytest.mark.parametrize("dest_exists", [True, False])
def test_a_link_out_of_the_folder_keeps_nothing_of_the_copy(tmp_path: Path, dest_exists: bool) -> None:
    dest = tmp_path / "build"
    if dest_exists:
        dest.mkdir()
    data = archive(("a.egg", b"egg", ""), ("b.whl", b"wheel", ""), ("shadow", b"", "/etc/shadow"))
    with pytest.raises(BuilderError, match="refused the guest's output /builder/out") as err:
        copy_out(data, dest)
    assert "shadow" in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["build"] if dest_exists else [])
    assert not dest.exists() or list(dest.iterdir()) == []


def test_an_oversized_output_keeps_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "build"
    dest.mkdir()
    with pytest.raises(OutputTooLarge):
        copy_out(archive(("a.egg", b"egg", ""), ("big.bin", bytes(64 << 10), "")), dest, max_output=16 << 10)
    assert list(dest.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["build"]


class Api:
    """The low-level calls DockerMachine.run makes, for a command that runs until killed."""

    def __init__(self, container: Running) -> None:
        self.container = container

    def exec_create(self, *args: object, **kwargs: object) -> dict:
        return {"Id": "exec"}

    def exec_start(self, exec_id: str, stream: bool = False) -> Iterator[bytes]:
        while not self.container.killed:
            time.sleep(0.05)
            yield b"."  # the endless loop prints, so the reader wakes

    def exec_inspect(self, exec_id: str) -> dict:
        return {"ExitCode": 137}


class Running:
    name, id, status = "guest", "guest-id", "running"

    def __init__(self, refuse: int) -> None:
        self.killed, self.refuse, self.calls = False, refuse, []
        self.client = type("Client", (), {"api": Api(self)})()

    def _stop(self, how: str) -> None:
        self.calls.append(how)
        if len(self.calls) <= self.refuse:
            raise docker.errors.APIError("the engine refused", explanation="busy")
        self.killed = True

    def kill(self) -> None:
        self._stop("kill")

    def remove(self, force: bool = False, v: bool = False) -> None:
        self._stop("remove")


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker_backend, "KILL_RETRY", 0.01)


@pytest.mark.usefixtures("quick_retries")
def test_a_guest_past_its_time_limit_is_killed_even_when_the_engine_refuses_once() -> None:
    guest = Running(refuse=1)
    done = DockerMachine(guest).run(["python", "loop.py"], timeout=0.2)  # type: ignore[arg-type]
    assert done.timed_out and "stopped after 0.2 s" in done.output
    assert guest.calls == ["kill", "kill"]


@pytest.mark.usefixtures("quick_retries")
def test_a_time_limit_that_cannot_be_enforced_is_an_error_not_a_pass() -> None:
    guest = Running(refuse=99)
    with pytest.raises(EngineError, match=r"could not stop a guest at its time limit \(0.2 s, limits.timeout\)"):
        DockerMachine(guest).run(["python", "loop.py"], timeout=0.2)  # type: ignore[arg-type]
    assert guest.calls == ["kill", "kill", "remove"]


class Receiver:
    """What copy_in uses of a docker SDK container: put_archive, keeping each tar it is sent."""

    def __init__(self) -> None:
        self.puts: list[tuple[str, bytes]] = []

    def put_archive(self, path: str, data: object) -> None:
        # The SDK takes bytes or a stream; builder streams a spooled file (never the archive in memory).
        assert not isinstance(data, (bytes, bytearray)), "copy_in sent the whole archive as bytes"
        self.puts.append((path, data.read()))  # type: ignore[attr-defined]


def test_copy_in_streams_a_spooled_archive_and_keeps_no_copy_of_it_in_memory(tmp_path: Path) -> None:
    # A 50 MB sdist sent as bytes cost twice its size per concurrent copy: builder's peak for the
    # shipped Debian cells at -j2 fell from 273 MB to 69 MB when it streamed a spooled file.
    import tracemalloc

    (tmp_path / "sdist.tar.gz").write_bytes(os.urandom(8 << 20))
    container = Receiver()
    tracemalloc.start()
    try:
        DockerMachine(container).copy_in(tmp_path / "sdist.tar.gz", "/builder/sources/sdist.tar.gz")  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    [(_, data)] = container.puts
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.getmember("sources/sdist.tar.gz")
        assert tar.extractfile(member).read() == (tmp_path / "sdist.tar.gz").read_bytes()  # type: ignore[union-attr]
    # The receiver's own read() of it is the one 8 MB copy; the archive was never built in memory too.
    assert peak < 12 << 20, f"copy_in held {peak >> 20} MB"


def test_copy_in_makes_the_writable_folders_in_the_same_archive(tmp_path: Path) -> None:
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "spec.json").write_text("{}")
    container = Receiver()
    DockerMachine(container).copy_in(tmp_path / "inputs", "/builder", mkdirs=["/builder/out"])  # type: ignore[arg-type]
    assert len(container.puts) == 1, "one call to the engine for the inputs and the output folder"
    path, data = container.puts[0]
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert path == "/builder"
    spec, out = members["spec.json"], members["out"]
    assert (spec.uid, spec.mode) == (0, 0o444), "inputs stay root's and read-only"
    assert out.isdir() and (out.uid, out.gid, out.mode) == (65534, 65534, 0o755), "out is the guest user's"


def test_copy_in_refuses_a_folder_outside_its_destination(tmp_path: Path) -> None:
    (tmp_path / "inputs").mkdir()
    with pytest.raises(ValueError, match="not under"):
        DockerMachine(Receiver()).copy_in(tmp_path / "inputs", "/builder/in", mkdirs=["/builder/out"])  # type: ignore[arg-type]

"""The docker backend's copy_out, driven with the tar stream an engine's get_archive gives:
a refused member keeps nothing of the copy, whatever came before it in the archive."""
from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.errors import BuilderError, OutputTooLarge
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

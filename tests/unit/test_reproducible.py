"""Reproducible artifacts, the parts that need no guest: SOURCE_DATE_EPOCH from an sdist, the zip
normalisation (order, times, modes, an egg's .pyc), the compiler flags chosen by what the compiler
accepts, and the host's comparison of a published artifact with its rebuild.

The builds themselves are proven bit-identical on the real images by tests/e2e/test_reproducible.py.
"""
from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import marshal
import os
import py_compile
import shutil
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from builder.guest import build  # noqa: F401 (loads the guest helpers as top-level modules, as guests do)
from builder.output.reproduce import compare, member_differences

repro = sys.modules["_reproducible"]
GuestError = sys.modules["_common"].GuestError

EPOCH = 1611178931  # 2021-01-20T21:42:11Z


def tar_sdist(path: Path, members: dict[str, int]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, mtime in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = 1, mtime
            tar.addfile(info, io.BytesIO(b"x"))
    return path


def test_source_date_epoch_is_the_newest_member_of_the_sdist(tmp_path: Path) -> None:
    sdist = tar_sdist(tmp_path / "p-1.0.tar.gz", {"p-1.0/setup.py": 1500000000, "p-1.0/PKG-INFO": EPOCH, "p-1.0/a.py": 1600000000})
    assert repro.source_date_epoch(str(sdist)) == EPOCH
    with zipfile.ZipFile(tmp_path / "q-1.0.zip", "w") as archive:
        archive.writestr(zipfile.ZipInfo("q-1.0/setup.py", (2020, 5, 6, 7, 8, 10)), b"x")
        archive.writestr(zipfile.ZipInfo("q-1.0/PKG-INFO", (2021, 1, 20, 21, 42, 10)), b"x")
    assert repro.source_date_epoch(str(tmp_path / "q-1.0.zip")) == EPOCH - 1  # zip keeps even seconds
    # A tarball of files dated 1970 (some tools write 0) still gets a time a zip can hold.
    old = tar_sdist(tmp_path / "r-1.0.tar.gz", {"r-1.0/setup.py": 0})
    assert repro.source_date_epoch(str(old)) == repro.ZIP_EPOCH


def test_the_packages_own_source_date_epoch_wins_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    sdist = str(tar_sdist(tmp_path / "p-1.0.tar.gz", {"p-1.0/setup.py": EPOCH}))
    assert repro.epoch_of({}, sdist) == (EPOCH, "the newest file of p-1.0.tar.gz")
    assert repro.epoch_of({"SOURCE_DATE_EPOCH": "1700000000"}, sdist) == (1700000000, "the package's env")
    with pytest.raises(GuestError, match="env SOURCE_DATE_EPOCH is 'yesterday': it must be a whole number"):
        repro.epoch_of({"SOURCE_DATE_EPOCH": "yesterday"}, sdist)


def messy_zip(path: Path, members: list[tuple[str, bytes, int]], when: tuple[int, ...]) -> Path:
    """A zip as a build leaves it: its order, its times, the umask's modes, an extra field."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name, when)  # type: ignore[arg-type]
            info.external_attr = mode << 16
            info.extra = b"\x55\x54\x05\x00\x01\x00\x00\x00\x00"  # a Unix time field, as zip(1) writes
            archive.writestr(info, data, zipfile.ZIP_DEFLATED)
        archive.comment = b"made on some machine"
    return path


def test_two_builds_differing_in_order_times_and_modes_normalise_to_the_same_bytes(tmp_path: Path) -> None:
    members = [("pkg/__init__.py", b"A = 1\n", 0o100664), ("EGG-INFO/PKG-INFO", b"Name: pkg\n", 0o100600),
               ("pkg/_speedups.so", b"\x7fELF...", 0o100775), ("pkg/data/", b"", 0o40775)]
    one = messy_zip(tmp_path / "one.egg", members, (2026, 12, 3, 12, 48, 40))
    two = messy_zip(tmp_path / "two.egg", list(reversed(members)), (2026, 12, 3, 13, 0, 2))
    assert one.read_bytes() != two.read_bytes()
    for path in (one, two):
        said = repro.normalise(str(path), EPOCH)
        assert said.startswith("4 members sorted, dated 2021-01-20T21:42:11Z, modes 0644/0755")
    assert one.read_bytes() == two.read_bytes()
    with zipfile.ZipFile(one) as archive:
        infos = archive.infolist()
        assert [i.filename for i in infos] == ["EGG-INFO/PKG-INFO", "pkg/__init__.py", "pkg/_speedups.so", "pkg/data/"]
        assert {i.date_time for i in infos} == {(2021, 1, 20, 21, 42, 10)}
        modes = {i.filename: i.external_attr >> 16 for i in infos}
        assert modes == {"EGG-INFO/PKG-INFO": 0o100644, "pkg/__init__.py": 0o100644, "pkg/_speedups.so": 0o100755,
                         "pkg/data/": 0o40755}
        assert all(i.extra == b"" and i.create_system == 3 for i in infos) and archive.comment == b""
        assert {i.filename: archive.read(i) for i in infos} == {name: data for name, data, _ in members}
    before = one.read_bytes()
    repro.normalise(str(one), EPOCH)  # once normalised, it stays as it is
    assert one.read_bytes() == before


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def test_a_wheel_keeps_its_record_true_with_the_dist_info_last(tmp_path: Path) -> None:
    files = {"pkg/__init__.py": b"A = 1\n", "pkg/_c.so": b"\x7fELF", "pkg-1.0.dist-info/METADATA": b"Name: pkg\n",
             "pkg-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\n", "pkg-1.0.data/scripts/tool": b"#!python\n"}
    record = "\n".join([record_line(n, d) for n, d in files.items()] + ["pkg-1.0.dist-info/RECORD,,"]) + "\n"
    members = [("pkg-1.0.dist-info/RECORD", record.encode(), 0o100664)]
    members += [(n, d, 0o100775 if n.endswith(("tool", ".so")) else 0o100664) for n, d in sorted(files.items(), reverse=True)]
    wheel = messy_zip(tmp_path / "pkg-1.0-cp311-cp311-linux_x86_64.whl", members, (2026, 1, 1, 0, 0, 0))
    repro.normalise(str(wheel), EPOCH)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert names == ["pkg-1.0.data/scripts/tool", "pkg/__init__.py", "pkg/_c.so", "pkg-1.0.dist-info/METADATA",
                         "pkg-1.0.dist-info/WHEEL", "pkg-1.0.dist-info/RECORD"]
        listed = archive.read("pkg-1.0.dist-info/RECORD").decode().splitlines()
        for line in listed[:-1]:
            name = line.split(",")[0]
            assert line == record_line(name, archive.read(name)), name  # each hash still the member's
        assert archive.getinfo("pkg-1.0.data/scripts/tool").external_attr >> 16 == 0o100755


def test_an_eggs_pyc_is_compiled_again_without_the_build_path(tmp_path: Path) -> None:
    source = b"def f():\n    return 1\n"
    build_dir = tmp_path / "tmp" / "builder-work" / "src" / "pkg-1.0" / "build" / "bdist.linux-x86_64" / "egg"
    (build_dir / "pkg").mkdir(parents=True)
    (build_dir / "pkg" / "mod.py").write_bytes(source)
    pyc = py_compile.compile(str(build_dir / "pkg" / "mod.py"), doraise=True,
                             invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
    compiled = Path(pyc).read_bytes()
    assert str(build_dir).encode() in compiled  # as bdist_egg leaves it: its folder, its clock
    tag = Path(pyc).name
    foreign = b"\x03\xf3\r\n" + b"\0" * 12 + b"python 2.7's, left as it is"
    members = [("pkg/mod.py", source, 0o100644), (f"pkg/__pycache__/{tag}", compiled, 0o100644),
               ("pkg/old.py", b"X = 1\n", 0o100644), ("pkg/old.pyc", foreign, 0o100644)]
    egg = messy_zip(tmp_path / "pkg-1.0-py3.11.egg", members, (2026, 12, 3, 12, 0, 0))
    said = repro.normalise(str(egg), EPOCH, recompile=True)
    assert said.endswith(", 1 .pyc compiled again without the build path")
    with zipfile.ZipFile(egg) as archive:
        new = archive.read(f"pkg/__pycache__/{tag}")
        assert archive.read("pkg/old.pyc") == foreign
    assert b"builder-work" not in new and new[:4] == importlib.util.MAGIC_NUMBER
    flags = int.from_bytes(new[4:8], "little")
    assert flags == 0b11  # hash-based and checked: valid after unzipping, whatever the files' times
    assert new[8:16] == importlib.util.source_hash(source)
    code = marshal.loads(new[16:])
    assert code.co_filename == "pkg/mod.py"
    assert marshal.loads(compiled[16:]).co_consts[0].co_code == code.co_consts[0].co_code  # the same code


def test_a_pyc_is_matched_with_the_source_it_was_compiled_from() -> None:
    assert repro.pyc_source("pkg/mod.pyc") == ("pkg/mod.py", 0)
    assert repro.pyc_source("pkg/__pycache__/mod.cpython-311.opt-1.pyc") == ("pkg/mod.py", 1)
    assert repro.pyc_source("__pycache__/six.cpython-311.pyc") == ("six.py", 0)
    assert repro.pyc_source("pkg/mod.py") is None


def compiler(tmp_path: Path, refuses: tuple[str, ...]) -> list[str]:
    """The host's gcc behind a wrapper that refuses options as an older gcc does."""
    script = tmp_path / "old-gcc"
    tests = "".join(f'  case "$a" in {option}=*) echo "gcc: error: unrecognized command-line option \'$a\'" >&2; exit 1;; esac\n'
                    for option in refuses)
    script.write_text(f'#!/bin/sh\nfor a in "$@"; do\n{tests}done\nexec gcc "$@"\n')
    script.chmod(0o755)
    return [str(script)]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs the host's gcc")
def test_the_prefix_map_flag_is_the_newest_the_compiler_accepts(tmp_path: Path) -> None:
    src = "/tmp/builder-work/src/pkg-1.0"
    assert repro.prefix_map_flags(["gcc"], src, str(tmp_path)) == [f"-ffile-prefix-map={src}=."]
    # gcc 4.3 to 7 (CentOS 6's 4.4): only the debug-information map.
    assert repro.prefix_map_flags(compiler(tmp_path, ("-ffile-prefix-map",)), src, str(tmp_path)) == [f"-fdebug-prefix-map={src}=."]
    # gcc 4.1 (CentOS 5): neither, and no flag is passed that would fail every compile.
    assert repro.prefix_map_flags(compiler(tmp_path, ("-ffile-prefix-map", "-fdebug-prefix-map")), src, str(tmp_path)) == []


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs the host's gcc")
def test_the_flag_takes_the_build_folder_out_of_the_debug_information(tmp_path: Path) -> None:
    src = tmp_path / "tmp-builder-work" / "src" / "pkg-1.0"
    src.mkdir(parents=True)
    (src / "m.c").write_text('const char *where(void) { return __FILE__; }\n')
    flags = repro.prefix_map_flags(["gcc"], str(src), str(tmp_path))
    for name, extra in (("plain.o", []), ("mapped.o", flags)):
        done = os.system(f"cd {src} && gcc -g -c {' '.join(extra)} {src / 'm.c'} -o {tmp_path / name}")
        assert done == 0
    assert str(src).encode() in (tmp_path / "plain.o").read_bytes()
    assert str(src).encode() not in (tmp_path / "mapped.o").read_bytes()


def test_the_flags_go_where_each_pythons_distutils_appends_them() -> None:
    flags = ["-ffile-prefix-map=/w/src/p=."]
    assert repro.add_flags({"CFLAGS": "-O1"}, flags, False) == {"CFLAGS": "-O1 -ffile-prefix-map=/w/src/p=.",
                                                                "CXXFLAGS": "-ffile-prefix-map=/w/src/p=."}
    # Python 2.7's distutils would drop its own CFLAGS for an environment CFLAGS: CPPFLAGS it appends.
    assert repro.add_flags({"PATH": "/bin"}, flags, True) == {"PATH": "/bin", "CPPFLAGS": "-ffile-prefix-map=/w/src/p=."}


# --- the host's comparison ------------------------------------------------------------------------

def test_a_rebuild_is_compared_member_by_member_content_apart_from_metadata(tmp_path: Path) -> None:
    base = [("pkg/__init__.py", b"A = 1\n", 0o100644), ("pkg/stamp.py", b"T = 1\n", 0o100644)]
    for folder in ("pub", "new"):
        (tmp_path / folder).mkdir()
    published = messy_zip(tmp_path / "pub" / "pkg-1.0.egg", base, (2021, 1, 1, 0, 0, 0))
    same = tmp_path / "new" / "same.egg"
    shutil.copy(published, same)
    found = compare(published, same, tmp_path / "report")
    assert found.identical and found.summary() == f"pkg-1.0.egg: identical (sha256 {found.published_sha256})"
    other = [("pkg/__init__.py", b"A = 1\n", 0o100664), ("pkg/stamp.py", b"T = 2\n", 0o100644), ("pkg/new.py", b"", 0o100644)]
    rebuilt = messy_zip(tmp_path / "new" / "pkg-1.0.egg", other, (2021, 1, 1, 0, 0, 0))
    found = compare(published, rebuilt, tmp_path / "report")
    assert not found.identical
    kinds = {(d.name, d.kind) for d in found.differences}
    assert kinds == {("pkg/__init__.py", "metadata"), ("pkg/stamp.py", "content"), ("pkg/new.py", "only-rebuilt")}
    meta = next(d for d in found.differences if d.kind == "metadata")
    assert meta.detail == "external_attr mode 100644 vs mode 100664"
    line = found.summary()
    assert "content differs: pkg/stamp.py; metadata only differs: pkg/__init__.py; only in the rebuild: pkg/new.py" in line
    if shutil.which("diffoscope") is None:
        assert found.diffoscope is None and "diffoscope is not installed" in found.diffoscope_note
    missing = compare(published, None, tmp_path / "report")
    assert not missing.identical and missing.summary() == "pkg-1.0.egg: the rebuild made no file of this name"


def test_a_difference_in_the_zips_own_bytes_alone_is_said_so(tmp_path: Path) -> None:
    members = [("a.py", b"A = 1\n" * 100, 0o100644)]
    one = messy_zip(tmp_path / "one.whl", members, (2021, 1, 1, 0, 0, 0))
    with zipfile.ZipFile(tmp_path / "two.whl", "w") as archive, zipfile.ZipFile(one) as source:
        for info in source.infolist():
            archive.writestr(info, source.read(info), zipfile.ZIP_DEFLATED, 1)  # another compression level
        archive.comment = source.comment
    assert one.read_bytes() != (tmp_path / "two.whl").read_bytes()
    assert [(d.kind, d.detail) for d in member_differences(one, tmp_path / "two.whl")] == [
        ("archive", "every member and its metadata are the same: the zip's own bytes differ (compression or headers)")]

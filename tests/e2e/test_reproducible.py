"""Reproducible artifacts: the shipped matrix's Debian platforms, published, then rebuilt from their
pinned inputs by `verify --rebuild` in fresh guests, give the same bytes; a package that is not
reproducible is named with the members that differ."""
from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from pathlib import Path

import pytest

from .conftest import builder, project
from .sdists import PY3_PLATFORM, entry, sdist

PLATFORMS = ("debian11-py27", "debian12")
SELECT = ("--platform", "debian11-py27", "--platform", "debian12")


def files_of(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file below `folder`: its bytes and its mtime, to prove nothing was written there."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def published(shipped: tuple[Path, str]) -> Path:
    """The suite's one `all` of the shipped matrix, whose two Debian platforms (12 cells) were
    built, tested and published there: its matrix."""
    return shipped[0] / "matrix.yaml"


def test_the_shipped_debian_cells_rebuild_bit_identical_without_touching_the_output(published: Path) -> None:
    root = published.parent
    before = files_of(root / "eggs")
    state = (root / ".builder" / "work" / "cells" / "debian12" / "pyyaml" / "build.json").read_bytes()
    done = builder(published, "verify", "--rebuild", *SELECT)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if re.match(r"^debian(11-py27|12)/\S+: ", line)]
    assert len(lines) == 12 and all(": identical: " in line for line in lines), done.stdout
    for platform in PLATFORMS:
        artifacts = sorted(p.name for p in (root / "eggs" / platform).iterdir() if p.suffix in (".egg", ".whl"))
        assert len(artifacts) == 12
        said = " ".join(line for line in lines if line.startswith(platform + "/"))
        assert all(name in said for name in artifacts), (artifacts, said)  # every published file compared
    assert "verify --rebuild: 12 of 12 cell(s) rebuilt bit-identical" in done.stdout
    # It built in fresh guests, into the work folder: the output folder and the cells' own state are untouched.
    assert files_of(root / "eggs") == before
    assert (root / ".builder" / "work" / "cells" / "debian12" / "pyyaml" / "build.json").read_bytes() == state
    rebuilt = root / ".builder" / "work" / "rebuild" / "debian12" / "pyyaml" / "build"
    assert (rebuilt / "PyYAML-5.4.1-cp311-cp311-linux_x86_64.whl").read_bytes() == before[
        "debian12/PyYAML-5.4.1-cp311-cp311-linux_x86_64.whl"][0]
    warm = builder(published, "all", *SELECT)  # the input keys and "up to date" are as before
    assert warm.returncode == 0 and warm.stdout.count("up to date: published with the same inputs") == 12, warm.stdout


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def test_published_zips_are_normalised_and_wheels_keep_a_true_record(published: Path) -> None:
    root = published.parent
    for platform in PLATFORMS:
        for path in sorted((root / "eggs" / platform).glob("*.[ew][gh][gl]")):
            with zipfile.ZipFile(path) as archive:
                infos = archive.infolist()
                names = [i.filename for i in infos]
                assert len({i.date_time for i in infos}) == 1, path.name  # one time: the sdist's
                assert {i.external_attr >> 16 for i in infos} <= {0o100644, 0o100755}, path.name
                # No build path in any member, compiled modules and .pyc included.
                assert not [n for n in names if b"/tmp/builder-work" in archive.read(n)], path.name
                if path.suffix == ".whl":
                    record = next(n for n in names if n.endswith(".dist-info/RECORD"))
                    assert names[-1] == record
                    assert names == sorted(names, key=lambda n: (".dist-info/" in n, n == record, n))
                    for line in archive.read(record).decode().splitlines():
                        name, digest, _ = line.rsplit(",", 2)
                        if name != record:
                            assert digest == record_hash(archive.read(name)), (path.name, name)
                else:
                    assert names == sorted(names)
    log = (root / ".builder" / "work" / "cells" / "debian11-py27" / "pyyaml" / "build.log").read_text()
    assert "SOURCE_DATE_EPOCH=1611178931 (2021-01-20T21:42:11Z, from the newest file of PyYAML-5.4.1.tar.gz)" in log
    assert "build paths: -ffile-prefix-map=/tmp/builder-work/src/PyYAML-5.4.1=." in log


# Writes the time of its build into the package: no two builds are alike.
CLOCK = {
    "setup.py": "import os, time\nfrom setuptools import setup\n"
                "open(os.path.join('clock', 'stamp.py'), 'w').write('BUILT = %r\\n' % time.time())\n"
                "setup(name='clock', version='1.0', packages=['clock'])\n",
    "clock/__init__.py": "from clock.stamp import BUILT\n",
}


def test_a_package_that_is_not_reproducible_is_named_with_the_members_that_differ(tmp_path: Path) -> None:
    clock = entry("clock", *sdist(tmp_path / "src", "clock", CLOCK)).replace("formats: [egg]", "formats: [egg, wheel]")
    calm = entry("calm", *sdist(tmp_path / "src", "calm", {"setup.py": "from setuptools import setup\n"
                                                              "setup(name='calm', version='1.0', py_modules=['calm'])\n",
                                                              "calm.py": "X = 1\n"}))
    matrix = project(tmp_path / "p", PY3_PLATFORM + clock + calm)
    done = builder(matrix, "all", "--cell", "debian12/clock")
    assert done.returncode == 0, done.stdout + done.stderr
    done = builder(matrix, "verify", "--rebuild")
    assert done.returncode == 13, done.stdout + done.stderr
    out = done.stdout
    assert re.search(r"^debian12/clock: NOT REPRODUCIBLE: .*clock-1\.0-py3\.11\.egg: differs \(sha256 [0-9a-f]{64} published, "
                     r"[0-9a-f]{64} rebuilt\): content differs: clock/__pycache__/stamp\.cpython-311\.pyc, clock/stamp\.py$",
                     out, re.M), out
    assert "clock-1.0-py3-none-any.whl: differs" in out and "content differs: clock/stamp.py, clock-1.0.dist-info/RECORD" in out
    assert "  clock-1.0-py3.11.egg: clock/stamp.py: content" in out
    assert "clock/__init__.py" not in out  # what is the same is not listed
    assert "debian12/calm: not checked: not published in" in out
    assert "verify --rebuild: 0 of 2 cell(s) rebuilt bit-identical; not reproducible: debian12/clock; not checked: debian12/calm" in out
    assert "did not rebuild to the published bytes: debian12/clock" in done.stderr
    # The rebuild's files are kept for a closer look; nothing of them went to the output folder.
    assert (tmp_path / "p" / ".builder" / "work" / "rebuild" / "debian12" / "clock" / "build" / "clock-1.0-py3.11.egg").is_file()
    assert builder(matrix, "verify").returncode == 0
    alone = builder(matrix, "verify", "--rebuild", "--cell", "debian12/calm")
    assert alone.returncode == 1 and "1 of 1 cell(s) could not be rebuilt and compared: debian12/calm" in alone.stderr, alone.stderr

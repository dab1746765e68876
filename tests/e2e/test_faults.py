"""The spine's failure modes, for real: each fails its own cell, clearly, and publishes nothing of it."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from .conftest import FIXTURES, REPO, builder, project
from .sdists import PY27_PLATFORM

SIX = "1e61c37477a1626458e36f7b1d82aa5c9b094fa4802892072e49de9c60c4c926"
PYYAML = "607774cbba28732bfa802b54baa7484215f530991055bb562efbed5b2f20a45e"
CYTHON = "95f1d6a83ef2729e67b3fa7318c829ce5b07ac64c084cd6af11c228e0364662c"
MARKUPSAFE = "29872e92839765e546828bb7754a68c418d927cd064fd4708fab9fe9c8bb116b"

FAULTS = PY27_PLATFORM + f"""\
  - name: PyYAML            # libyaml to build, but not declared for the servers
    version: 5.4.1
    sha256: {PYYAML}
    formats: [egg]
    build_requires: [{{name: Cython, version: 0.29.37, sha256: {CYTHON}}}]
    env: {{PYYAML_FORCE_CYTHON: "1", PYYAML_FORCE_LIBYAML: "1"}}
    extensions: [yaml._yaml]
    system: {{debian: {{build: [libyaml-dev]}}}}
  - name: MarkupSafe        # 1.1.1 falls back to pure Python when its extension cannot compile
    version: 1.1.1
    sha256: {MARKUPSAFE}
    formats: [egg]
    env: {{CC: /bin/false}}
    extensions: [markupsafe._speedups]
  - name: simplejson        # a wrong pin
    version: 3.19.3
    sha256: {"0" * 64}
  - name: six
    version: 1.16.0
    sha256: {SIX}
    formats: [egg]
    extensions: []
"""


def test_each_fault_fails_its_own_cell_and_the_rest_publish(tmp_path: Path) -> None:
    matrix = project(tmp_path / "p", FAULTS)
    done = builder(matrix, "all", "-j", "2")
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    results = {}
    for cell in ("pyyaml", "markupsafe", "simplejson", "six"):
        stages = {}
        for name in ("fetch", "build", "test", "publish"):
            path = tmp_path / "p" / ".builder" / "work" / "cells" / "debian11-py27" / cell / f"{name}.json"
            if path.exists():
                stages[name] = json.loads(path.read_text())
        results[cell] = stages
    # A missing run-time library is named, with the matrix key to change.
    reason = results["pyyaml"]["test"]["reason"]
    assert "libyaml-0.so.2" in reason and "system.debian.runtime" in reason, reason
    # A C package that silently built without its extension fails.
    assert results["markupsafe"]["build"]["status"] == "passed"
    assert "markupsafe._speedups" in results["markupsafe"]["test"]["reason"]
    # A wrong sha256 is refused before anything is built.
    assert results["simplejson"]["fetch"]["status"] == "failed"
    assert "sha256" in results["simplejson"]["fetch"]["reason"]
    assert "build" not in results["simplejson"]
    assert not (tmp_path / "p" / ".builder" / "work" / "cells" / "debian11-py27" / "simplejson" / "build.log").exists()
    # The healthy cell is unaffected and is the only one published.
    assert results["six"]["publish"]["status"] == "passed"
    published = sorted(p.name for p in (tmp_path / "p" / "eggs" / "debian11-py27").glob("*.egg"))
    assert published == ["six-1.16.0-py2.7.egg"]
    assert "python -m builder all --cell debian11-py27/pyyaml" in out


def _sdist(folder: Path) -> tuple[Path, str]:
    target = folder / "newglibc-1.0.tar.gz"
    with tarfile.open(target, "w:gz") as tar:
        for name in ("setup.py", "newglibc.c"):
            data = (FIXTURES / "newglibc" / name).read_bytes()
            info = tarfile.TarInfo(f"newglibc-1.0/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return target, hashlib.sha256(target.read_bytes()).hexdigest()


def test_an_extension_built_on_a_newer_glibc_is_caught_by_the_library_check(tmp_path: Path) -> None:
    sdist, digest = _sdist(tmp_path)
    text = f"""
platforms:
  - name: glibc-skew
    family: debian
    base: {{debootstrap: bullseye}}
    python: /usr/bin/python3
packages:
  - name: newglibc
    version: "1.0"
    sha256: {digest}
    path: {sdist}
    formats: [egg]
    extensions: [newglibc]
"""
    # Its build stage starts FROM the bookworm base: make sure this machine has it.
    shipped = project(tmp_path / "shipped", (REPO / "matrix.yaml").read_text())
    made = builder(shipped, "images", "--platform", "debian12")
    assert made.returncode == 0, made.stdout + made.stderr
    matrix = project(tmp_path / "p", text, images=FIXTURES / "images")
    done = builder(matrix, "all")
    assert done.returncode == 1, done.stdout + done.stderr
    result = json.loads((tmp_path / "p" / ".builder/work/cells/glibc-skew/newglibc/test.json").read_text())
    joined = " ".join(result["details"]["reasons"])
    assert "GLIBC_2.3" in joined and "newer than the glibc-skew runtime" in joined, joined
    assert not list((tmp_path / "p" / "eggs").glob("*/*.egg"))


def test_bad_input_gives_one_clear_message_and_nothing_written(tmp_path: Path) -> None:
    matrix = project(tmp_path / "p", FAULTS.replace("formats: [egg]\n    build_requires", "formatz: [egg]\n    build_requires"))
    done = builder(matrix, "all")
    assert done.returncode == 2
    assert "matrix.yaml:" in done.stderr and "did you mean 'formats'" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    good = project(tmp_path / "q", FAULTS)
    done = builder(good, "all", "--platform", "centos9")
    assert done.returncode == 2 and "no platform matches 'centos9'" in done.stderr
    done = builder(good, "all", "--package", "six", env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert done.returncode == 4 and "Docker engine is not reachable" in done.stderr, done.stderr
    assert not (tmp_path / "p" / "eggs").exists() and not (tmp_path / "q" / "eggs").exists()

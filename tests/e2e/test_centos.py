"""CentOS 6 here: its base cannot be pulled, and builder says so before fetching anything; a
local stand-in base then takes images/centos/Dockerfile, unchanged, through every stage.

The stand-in (tests/fixtures/images/centos-standin) is a Debian 11 base answering the `rpm` and
`yum` calls the Dockerfile makes, and `rpm -q NAME` from a package list (what its yum installed),
so the runtime check's "no build-only package" is really asked; its Dockerfile says why a
stand-in base, and not a build argument.
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from pathlib import Path

import docker

from .conftest import FIXTURES, REPO, builder, project

STANDIN = "builder-test/centos-standin:6"
VIRTUALENV = "{name: virtualenv, version: 16.7.12, sha256: 9180ce4102c388073bac71ecd041f7f31f9ef8c528edb205d75ae6144d08106e}"

# The "Python 2.7.18 source" the stand-in compiles: a real configure/make/make altinstall with
# gcc, producing /usr/local/bin/python2.7 (a launcher for the base's own 2.7), so the python
# stage, its compiler and the copy of /usr/local into the runtime target all really happen.
LAUNCHER = {
    "configure": "#!/bin/sh\n# stand-in configure: keeps its arguments\necho \"$@\" > config.args\n",
    "Makefile": (
        "all: python2.7\n"
        "python2.7: launcher.c\n\tgcc -O2 -o python2.7 launcher.c\n"
        "altinstall: python2.7\n\tinstall -d /usr/local/bin\n\tinstall -m 755 python2.7 /usr/local/bin/python2.7\n"
    ),
    "launcher.c": (
        "#include <unistd.h>\n"
        "int main(int argc, char **argv) { argv[0] = \"/usr/bin/python2.7\"; execv(argv[0], argv); return 127; }\n"
    ),
}


def _python_tarball(folder: Path) -> tuple[Path, str]:
    path = folder / "Python-2.7.18.tgz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in LAUNCHER.items():
            data = text.encode()
            info = tarfile.TarInfo(f"Python-2.7.18/{name}")
            info.size, info.mode, info.mtime = len(data), 0o755 if name == "configure" else 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())
    return path, hashlib.sha256(buffer.getvalue()).hexdigest()


def test_an_unpullable_centos_base_stops_the_run_before_anything_is_fetched(tmp_path: Path) -> None:
    matrix = project(tmp_path / "p", (REPO / "matrix.yaml").read_text())
    started = time.monotonic()
    # A mirror that cannot exist, so that a centos:6 someone loaded on this machine is not used.
    cache = tmp_path / "cache"
    done = builder(matrix, "all", "--platform", "centos6",
                   env={"BUILDER_REGISTRY_MIRROR": "mirror.builder-test.invalid:5000/", "BUILDER_CACHE": str(cache)})
    assert done.returncode == 5, done.stdout + done.stderr
    assert time.monotonic() - started < 60
    err = done.stderr
    assert "Traceback" not in err and "fetch" not in done.stdout, done.stdout + err
    assert "base image mirror.builder-test.invalid:5000/centos:6 of platform centos6 is not on this machine and cannot be pulled" in err
    assert "registry_mirror" in err and "BUILDER_REGISTRY_MIRROR" in err and "docker load" in err, err
    assert err.count("error:") == 1, err
    # Nothing was fetched: not the Python tarball, not even the virtualenv the index would give.
    assert not [p for p in cache.rglob("*") if p.is_file()]


def _standin(tmp_path: Path) -> None:
    # The stand-in starts FROM the bullseye base: make sure this machine has it.
    shipped = project(tmp_path / "shipped", (REPO / "matrix.yaml").read_text())
    made = builder(shipped, "images", "--platform", "debian11-py27")
    assert made.returncode == 0, made.stdout + made.stderr
    docker.from_env().images.build(
        path=str(FIXTURES / "images" / "centos-standin"), tag=STANDIN, labels={"io.builder": "test"}, rm=True
    )


def _matrix(tmp_path: Path, simplejson_system: str = "") -> tuple[str, str]:
    tarball, sha256 = _python_tarball(tmp_path)
    text = f"""
platforms:
  - name: centos6
    family: redhat
    base: {{image: "{STANDIN}"}}
    image: images/centos
    python: /usr/local/bin/python2.7
    context:
      - {{name: Python, version: 2.7.18, path: {tarball}, sha256: {sha256}}}
    tools:
      - {VIRTUALENV}
packages:
  - name: simplejson
    version: 3.19.3
    sha256: 8e086896c36210ab6050f2f9f095a5f1e03c83fa0e7f296d6cba425411364680
    formats: [egg]
    env: {{REQUIRE_SPEEDUPS: "1"}}
    extensions: [simplejson._speedups]
  - name: PyYAML
    version: 5.4.1
    sha256: 607774cbba28732bfa802b54baa7484215f530991055bb562efbed5b2f20a45e
    formats: [egg]
    build_requires:
      - {{name: Cython, version: 0.29.37, sha256: 95f1d6a83ef2729e67b3fa7318c829ce5b07ac64c084cd6af11c228e0364662c}}
    env: {{PYYAML_FORCE_CYTHON: "1", PYYAML_FORCE_LIBYAML: "1"}}
    extensions: [yaml._yaml]
    system:
      redhat: {{build: [libyaml-devel], runtime: [libyaml]}}
"""
    return text.replace("    extensions: [simplejson._speedups]\n", "    extensions: [simplejson._speedups]\n" + simplejson_system), sha256


def test_the_standin_rpm_answers_from_its_package_list() -> None:
    docker.from_env().images.build(
        path=str(FIXTURES / "images" / "centos-standin"), tag=STANDIN, labels={"io.builder": "test"}, rm=True
    )
    probe = "rpm -q python; echo $?; rpm -q libyaml-devel gcc; echo $?; echo libyaml-devel >> /var/lib/rpm-standin/installed; rpm -q libyaml-devel; echo $?"
    out = docker.from_env().containers.run(STANDIN, ["sh", "-c", probe], remove=True, network_mode="none").decode().split("\n")
    assert out[:6] == ["python-0-1.el6.x86_64", "0", "package libyaml-devel is not installed", "package gcc is not installed",
                       "2", "libyaml-devel-0-1.el6.x86_64"], out
    assert out[6] == "0", out


def test_a_local_standin_base_goes_through_every_centos_stage(tmp_path: Path) -> None:
    _standin(tmp_path)
    text, sha256 = _matrix(tmp_path)
    matrix = project(tmp_path / "p", text)
    done = builder(matrix, "all", "--platform", "centos6")
    assert done.returncode == 0, done.stdout + done.stderr
    root = matrix.parent
    # The build context held the pinned tarball, byte for byte.
    context = root / ".builder" / "work" / "contexts" / "centos6"
    assert hashlib.sha256((context / "Python-2.7.18.tgz").read_bytes()).hexdigest() == sha256
    assert (context / "Dockerfile").read_text() == (REPO / "images" / "centos" / "Dockerfile").read_text()
    for package, extension in (("simplejson", "simplejson._speedups"), ("pyyaml", "yaml._yaml")):
        cell = root / ".builder" / "work" / "cells" / "centos6" / package
        checked = json.loads((cell / "test" / "egg" / "check-result.json").read_text())
        assert checked["ok"] and checked["python"].startswith("2.7"), checked
        # Toolless: no compiler, and libyaml-devel (yum's, mapped) only on the build image.
        assert checked["compilers"] == [] and checked["build_only_installed"] == [], checked
        assert checked["extensions"][extension] == "extension"
    assert sorted(p.name for p in (root / "eggs" / "centos6").glob("*.egg")) == [
        "PyYAML-5.4.1-py2.7-linux-x86_64.egg", "simplejson-3.19.3-py2.7-linux-x86_64.egg",
    ]
    # Both targets were built from the one Dockerfile; the runtime has the interpreter, no gcc.
    manifest = json.loads((root / "eggs" / "centos6" / "manifest.json").read_text())
    runtime = next(iter(manifest["artifacts"].values()))["runtime_image"]
    probe = docker.from_env().containers.run(
        runtime, ["sh", "-c", "/usr/local/bin/python2.7 -c 'import sys; print(sys.version[:6])'; command -v gcc || echo no-gcc"],
        remove=True, network_mode="none",
    ).decode()
    assert probe.split() == ["2.7.18", "no-gcc"], probe


def test_a_build_only_package_in_the_runtime_image_fails_the_redhat_toolless_check(tmp_path: Path) -> None:
    _standin(tmp_path)
    # simplejson asks for libyaml-devel at run time, so the runtime image has it: PyYAML, which
    # needs it only to build, must then fail its test, the package named.
    text, _ = _matrix(tmp_path, "    system:\n      redhat: {runtime: [libyaml-devel]}\n")
    matrix = project(tmp_path / "p", text)
    done = builder(matrix, "all", "--platform", "centos6")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    cells = matrix.parent / ".builder" / "work" / "cells" / "centos6"
    checked = json.loads((cells / "pyyaml" / "test" / "egg" / "check-result.json").read_text())
    assert not checked["ok"] and checked["build_only_installed"] == ["libyaml-devel"], checked
    reason = json.loads((cells / "pyyaml" / "test.json").read_text())["reason"]
    assert "libyaml-devel" in reason and "system.redhat.build" in reason, reason
    assert json.loads((cells / "simplejson" / "test.json").read_text())["status"] == "passed"
    assert sorted(p.name for p in (matrix.parent / "eggs" / "centos6").glob("*.egg")) == ["simplejson-3.19.3-py2.7-linux-x86_64.egg"]

"""Packages nobody tuned for, on the real engine: what a build prints must never crash the guest
script, and the one-line reason must be the real cause."""
from __future__ import annotations

import json
from pathlib import Path

from .conftest import builder, project
from .sdists import CALM, PLATFORM, PY27_PLATFORM, entry, no_strays, sdist  # noqa: F401 (no_strays: a fixture)

# A C++ extension: Debian 11's build image has gcc but no g++, so gcc cannot run cc1plus and says
# so in its UTF-8 quotes (‘cc1plus’), which Python 2.7 must neither choke on nor hide.
CPP = {
    # ... and it says something that is not UTF-8 at all first.
    "setup.py": "import sys\ngetattr(sys.stdout, 'buffer', sys.stdout).write(b'\\xff\\xfe not UTF-8\\n')\n"
                "from setuptools import setup, Extension\n"
                "setup(name='cppext', version='1.0', ext_modules=[Extension('cppext', ['cppext.cpp'])])\n",
    "cppext.cpp": "#include <Python.h>\nextern \"C\" void initcppext(void) {}\n",
}


def test_a_cpp_sdist_without_gxx_fails_naming_cc1plus_not_a_crash(tmp_path: Path) -> None:
    path, sha = sdist(tmp_path / "src", "cppext", CPP)
    text = PY27_PLATFORM + f"""
  - name: cppext
    version: "1.0"
    sha256: {sha}
    path: {path}
    formats: [egg, wheel]
"""
    matrix = project(tmp_path / "p", text)
    done = builder(matrix, "all", "--cell", "debian11-py27/cppext")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    result = json.loads((tmp_path / "p/.builder/work/cells/debian11-py27/cppext/build.json").read_text())
    reason = result["reason"]
    assert "crashed" not in reason and "UnicodeEncodeError" not in reason, reason
    assert "cc1plus" in reason, reason
    # Both formats were tried: the egg's failure did not stop the wheel.
    assert "egg build failed" in reason and "wheel build failed" in reason, reason
    assert "cc1plus" in out


def test_an_image_that_fails_to_build_says_what_apt_said_and_exits_5(tmp_path: Path) -> None:
    path, sha = sdist(tmp_path / "src", "calm", CALM)
    text = PLATFORM + entry("calm", path, sha, "    system: {debian: {runtime: [libbuilder-nosuch0]}}\n")
    matrix = project(tmp_path / "p", text)
    done = builder(matrix, "all")
    out = done.stdout + done.stderr
    assert done.returncode == 5, out
    result = json.loads((tmp_path / "p/.builder/work/cells/debian12/calm/images.json").read_text())
    assert "Unable to locate package libbuilder-nosuch0" in result["reason"], result["reason"]
    assert "Unable to locate package libbuilder-nosuch0" in Path(result["log"]).read_text()
    assert "Unable to locate package libbuilder-nosuch0" in done.stdout
    assert "builder shell" not in done.stdout, done.stdout  # there is no image to enter


def test_a_package_is_not_published_when_the_package_it_depends_on_failed(tmp_path: Path) -> None:
    base = {"setup.py": "from setuptools import setup\nsetup(name='base', version='1.0', py_modules=['base'])\n",
            "base.py": "X = 1\n"}
    user = {"setup.py": "from setuptools import setup\nsetup(name='user', version='1.0', py_modules=['user'])\n",
            "user.py": "import base\n"}
    text = PLATFORM + entry("base", *sdist(tmp_path / "src", "base", base), "    test: \"python -c 'raise SystemExit(3)'\"\n") \
        + entry("user", *sdist(tmp_path / "src", "user", user), "    depends: [base]\n")
    matrix = project(tmp_path / "p", text)
    done = builder(matrix, "all", "-j", "2")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    cells = tmp_path / "p/.builder/work/cells/debian12"
    assert json.loads((cells / "base/test.json").read_text())["status"] == "failed"
    dependent = json.loads((cells / "user/test.json").read_text())
    assert dependent["status"] == "failed" and "needs debian12/base, which failed at test" in dependent["reason"], dependent
    assert not list((tmp_path / "p/eggs").glob("*/*.egg")), out


def test_a_tampered_published_file_is_rebuilt_and_the_run_says_so(tmp_path: Path) -> None:
    matrix = project(tmp_path / "p", PLATFORM + entry("calm", *sdist(tmp_path / "src", "calm", CALM)))
    first = builder(matrix, "all")
    assert first.returncode == 0, first.stdout + first.stderr
    (egg,) = (tmp_path / "p/eggs/debian12").glob("*.egg")
    with open(egg, "ab") as handle:
        handle.write(b"\0")
    again = builder(matrix, "all")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"[debian12/calm] {egg} no longer matches the manifest" in again.stdout, again.stdout
    assert builder(matrix, "verify").returncode == 0


def test_a_wrong_sha256_alone_exits_3(tmp_path: Path) -> None:
    path, _ = sdist(tmp_path / "src", "calm", CALM)
    matrix = project(tmp_path / "p", PLATFORM + entry("calm", path, "0" * 64))
    done = builder(matrix, "all")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "sha256" in done.stdout and "builder shell" not in done.stdout, done.stdout

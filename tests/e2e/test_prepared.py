"""A platform's build virtualenv is made once and each cell unpacks its own copy: faster, and no
cell sees what another cell's setup.py did to its environment."""
from __future__ import annotations

import json
from pathlib import Path

from .conftest import builder, project
from .sdists import PY27_PLATFORM, entry, sdist

# Leaves a module in its build environment's site-packages and says where that environment is.
SPOILER = """\
import os, sys
from distutils.sysconfig import get_python_lib
from setuptools import setup
open(os.path.join(get_python_lib(), "spoiled.py"), "w").write("X = 1\\n")
print("BUILD-PREFIX=" + sys.prefix)
setup(name="spoiler", version="1.0", py_modules=["spoiler"])
"""

# Fails its build if it can see what the spoiler left.
CHECKER = """\
import sys
from setuptools import setup
try:
    import spoiled
except ImportError:
    pass
else:
    sys.exit("a previous cell's setup.py changed this cell's build environment: " + spoiled.__file__)
print("BUILD-PREFIX=" + sys.prefix)
setup(name="checker", version="1.0", py_modules=["checker"])
"""


def test_each_cell_builds_in_its_own_copy_of_the_platforms_prepared_virtualenv(tmp_path: Path) -> None:
    spoiler = entry("spoiler", *sdist(tmp_path / "src", "spoiler", {"setup.py": SPOILER, "spoiler.py": "A = 1\n"}))
    checker = entry("checker", *sdist(tmp_path / "src", "checker", {"setup.py": CHECKER, "checker.py": "B = 1\n"}))
    matrix = project(tmp_path / "p", PY27_PLATFORM + spoiler + checker)
    cells = tmp_path / "p" / ".builder" / "work" / "cells" / "debian11-py27"
    # One after the other, the spoiler first: the checker's build starts after the spoiler's ended.
    for name in ("spoiler", "checker"):
        done = builder(matrix, "all", "--cell", f"debian11-py27/{name}")
        assert done.returncode == 0, done.stdout + done.stderr
        log = (cells / name / "build.log").read_text()
        assert "build environment: virtualenv (made once for the platform's builds, unused until now)" in log, log
        assert "BUILD-PREFIX=/tmp/builder-work/venv" in log, log  # where it was made, so it is whole
        steps = json.loads((cells / name / "build.json").read_text())["details"]["timings"]["guest"]
        assert "prepared" in steps and steps["virtualenv"] < 1.0, steps
    published = sorted(p.name for p in (tmp_path / "p" / "eggs" / "debian11-py27").glob("*.egg"))
    assert published == ["checker-1.0-py2.7.egg", "spoiler-1.0-py2.7.egg"]

"""builder installed from its own sdist (as tox, pip and CI install it) has every file of the
package: the guests' scripts that are not Python included."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_what_is_built_from_the_sdist_holds_every_file_of_the_package(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    tracked = subprocess.run(["git", "ls-files", "builder", "pyproject.toml", "README.md"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / name, tree / name)
    build = "import sys, setuptools.build_meta as b; print(getattr(b, sys.argv[1])(sys.argv[2]))"
    sdist = subprocess.run([sys.executable, "-c", build, "build_sdist", str(tmp_path / "dist")], cwd=tree,
                           capture_output=True, text=True, check=True).stdout.split()[-1]
    with tarfile.open(tmp_path / "dist" / sdist) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    [unpacked] = (tmp_path / "unpacked").iterdir()
    # What a wheel (and so an install) gets: setuptools' build_py of the unpacked sdist.
    lib = tmp_path / "lib"
    subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "build_py", "--build-lib", str(lib)],
                   cwd=unpacked, capture_output=True, text=True, check=True)
    shipped = {str(p.relative_to(lib)) for p in lib.rglob("*") if p.is_file()}
    missing = sorted(name for name in tracked if name.startswith("builder/") and name not in shipped)
    assert missing == [], f"installed from the sdist, builder lacks {missing}"
    assert "builder/guest/interpreter.sh" in shipped

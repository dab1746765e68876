"""sdists without a setup.py, built by their PEP 517 backend offline from pinned wheels, for real.

tomli 2.0.1 builds with flit_core and annotated-types 0.7.0 with hatchling (and hatchling's own
requirements): each is built as a wheel by its backend, its egg is made from that wheel by
setuptools' conversion, both are tested in the runtime image, published, and install offline
with pip --no-index. MarkupSafe 3.0.3 keeps its setup.py but needs setuptools>=77: the pinned
setuptools builds it. A backend requirement that is not pinned fails the cell naming it.
"""
from __future__ import annotations

import json
from pathlib import Path

from .conftest import REPO, builder, docker_run, project
from .sdists import PY3_PLATFORM, fixture_sdist, sdist

BACKENDS = PY3_PLATFORM + """\
  - name: tomli                      # flit_core
    version: 2.0.1
    sha256: de526c12914f0c550d15924c62d72abc48d6fe7364aa87328337a31007fe8a4f
    extensions: []
    build_requires:
      - {name: flit-core, version: 3.9.0, sha256: 7aada352fb0c7f5538c4fafeddf314d3a6a92ee8e2b1de70482329e42de70301}
  - name: annotated-types            # hatchling
    version: 0.7.0
    sha256: aff07c09a53a08bc8cfccb9c85b05f1aa9a2a6f23728d790723543408344ce89
    extensions: []
    build_requires:
      - {name: hatchling, version: 1.25.0, sha256: b47948e45d4d973034584dd4cb39c14b6a70227cf287ab7ec0ad7983408a882c}
      - {name: packaging, version: "24.1", sha256: 5b8f2217dbdbd2f7f384c41c628544e6d52f2d0f53c6d0c3ea61aa5d1d7ff124}
      - {name: pathspec, version: 0.12.1, sha256: a0d503e138a4c123b27490a4f7beda6a01c6f288df0e4a8b79c7eb0dc7b4cc08}
      - {name: pluggy, version: 1.5.0, sha256: 44e1ad92c8ca002de6377e165f3e0f1be63266ab4d554740532335b9d75ea669}
      - {name: trove-classifiers, version: 2024.7.2, sha256: ccc57a33717644df4daca018e7ec3ef57a835c48e96a1e71fc07eb7edac67af6}
  - name: MarkupSafe                 # setup.py, and a pyproject.toml that needs setuptools>=77 (Debian 12 has 66)
    version: 3.0.3
    sha256: 722695808f4b6457b320fdc131280796bdceb04ab50fe1795cd540799ebe1698
    extensions: [markupsafe._speedups]
    build_requires:
      - {name: setuptools, version: 80.9.0, sha256: 062d34222ad13e0cc312a4c02d73f059e86a4acbfbdea8f8f76b28c99f306922}
"""


def _pip() -> Path:
    return next((REPO / ".builder" / "cache" / "sources").glob("*/pip-24.2-py3-none-any.whl"))


def test_flit_and_hatchling_sdists_build_test_publish_and_install_offline(tmp_path: Path) -> None:
    matrix = project(tmp_path / "p", BACKENDS)
    done = builder(matrix, "all", "-j", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    eggs = tmp_path / "p" / "eggs" / "debian12"
    manifest = json.loads((eggs / "manifest.json").read_text())
    names = sorted(manifest["artifacts"])
    assert names == [
        "MarkupSafe-3.0.3-py3.11-linux-x86_64.egg",  # bdist_egg names it as setup.py does
        "annotated_types-0.7.0-py3-none-any.whl", "annotated_types-0.7.0-py3.11.egg",
        "markupsafe-3.0.3-cp311-cp311-linux_x86_64.whl",
        "tomli-2.0.1-py3-none-any.whl", "tomli-2.0.1-py3.11.egg",
    ], names
    log = (tmp_path / "p" / ".builder" / "work" / "cells" / "debian12" / "tomli" / "build.log").read_text()
    assert "build backend flit_core.buildapi: its requirements are met" in log
    assert "made from tomli-2.0.1-py3-none-any.whl by setuptools' wheel-to-egg conversion" in log
    runtime = next(iter(manifest["artifacts"].values()))["runtime_image"]
    check = "import tomli, annotated_types, markupsafe._speedups; assert tomli.loads('a = 1') == {'a': 1}; print(annotated_types.Gt(1))"
    script = (
        "python3 -m venv --without-pip /tmp/v && "
        "/tmp/v/bin/python /pip.whl/pip install -q --no-index --find-links /eggs/index.html tomli annotated-types MarkupSafe && "
        f"/tmp/v/bin/python -c \"{check}\" && "
        # The egg the way eggs are installed: unzipped onto the path (see README, eggs on Python 3).
        "python3 -c \"import zipfile; zipfile.ZipFile('/eggs/tomli-2.0.1-py3.11.egg').extractall('/tmp/egg')\" && "
        "PYTHONPATH=/tmp/egg python3 -c \"import tomli, sys; assert tomli.__file__.startswith('/tmp/egg'); print('egg ok')\""
    )
    ran = docker_run(runtime, script, f"{eggs}:/eggs:ro", f"{_pip()}:/pip.whl:ro")
    assert ran.returncode == 0 and ran.stdout.strip().endswith("egg ok"), ran.stdout + ran.stderr
    assert "Gt(gt=1)" in ran.stdout
    # check-imports of an application over what was published, in each format.
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text("import tomli\nfrom annotated_types import Gt\nimport markupsafe._speedups\n")
    for fmt in ("egg", "wheel"):
        checked = builder(matrix, "check-imports", str(app), "--platform", "debian12", "--format", fmt)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_an_unpinned_backend_requirement_fails_the_cell_naming_it(tmp_path: Path) -> None:
    files = {
        "pyproject.toml": '[build-system]\nrequires = ["flit_core >=3.2,<4"]\nbuild-backend = "flit_core.buildapi"\n\n'
        '[project]\nname = "flitty"\nversion = "1.0"\ndescription = "x"\n',
        "flitty.py": "X = 1\n",
    }
    path, sha256 = sdist(tmp_path / "src", "flitty", files)
    text = PY3_PLATFORM + f"""\
  - name: flitty
    version: "1.0"
    sha256: {sha256}
    path: {path}
    extensions: []
"""
    matrix = project(tmp_path / "p", text)
    done = builder(matrix, "all")
    assert done.returncode == 1, done.stdout + done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("[debian12/flitty] build: failed"))
    assert "the build backend flit_core.buildapi needs flit_core >=3.2,<4 (not installed)" in line, line
    assert "pin it in build_requires" in done.stdout, done.stdout
    assert not (tmp_path / "p" / "eggs" / "debian12").exists() or not list((tmp_path / "p" / "eggs" / "debian12").glob("flitty*"))


COMPILED = """\
    version: "1.0"
    formats: [egg, wheel]
"""


def test_meson_python_and_scikit_build_core_build_c_extensions(tmp_path: Path) -> None:
    """A C extension through meson + ninja (meson-python) and through CMake (scikit-build-core):
    the backends are pinned wheels; meson and ninja are pinned wheels too (their commands put on
    PATH), cmake and ninja for scikit-build-core the build image's OS packages; the
    compiled modules load as extensions in the runtime image, which has none of those tools, and
    each backend's config setting (setup-args, cmake.define) reached the compile."""
    meson, meson_sha = fixture_sdist(tmp_path / "src", "mesonpkg")
    skbuild, skbuild_sha = fixture_sdist(tmp_path / "src", "skbuildpkg")
    text = PY3_PLATFORM + f"""\
  - name: mesonpkg
{COMPILED}    sha256: {meson_sha}
    path: {meson}
    extensions: [mesonpkg._speed]
    config_settings: {{setup-args: [-Dgreeting=configured]}}
    test: "python -c 'import mesonpkg._speed as s; assert s.greeting() == \\"configured\\", s.greeting()'"
    build_requires:                  # meson and ninja as pinned wheels: their commands go on PATH
      - {{name: meson, version: 1.5.2, sha256: 77706e2368a00d789c097632ccf4fc39251fba56d03e1e1b262559a3c7a08f5b}}
      - {{name: ninja, version: 1.11.1.1, sha256: 84502ec98f02a037a169c4b0d5d86075eaf6afc55e1879003d6cab51ced2ea4b}}
      - {{name: meson-python, version: 0.17.1, sha256: 30a75c52578ef14aff8392677b09c39346e0a24d2b2c6204b8ed30583c11269c}}
      - {{name: pyproject-metadata, version: 0.9.1, sha256: ee5efde548c3ed9b75a354fc319d5afd25e9585fa918a34f62f904cc731973ad}}
      - {{name: packaging, version: "24.1", sha256: 5b8f2217dbdbd2f7f384c41c628544e6d52f2d0f53c6d0c3ea61aa5d1d7ff124}}
  - name: skbuildpkg
{COMPILED}    sha256: {skbuild_sha}
    path: {skbuild}
    extensions: [skbuildpkg._speed]
    config_settings: {{cmake.define.GREETING: configured}}
    test: "python -c 'import skbuildpkg._speed as s; assert s.greeting() == \\"configured\\", s.greeting()'"
    system: {{debian: {{build: [cmake, ninja-build]}}}}   # cmake and ninja as the build image's OS packages
    build_requires:
      - {{name: scikit-build-core, version: 0.11.6, sha256: ce6d8fe64e6b4c759ea0fb95d2f8a68f60d2df31c2989838633b8ec930736360}}
      - {{name: packaging, version: "24.1", sha256: 5b8f2217dbdbd2f7f384c41c628544e6d52f2d0f53c6d0c3ea61aa5d1d7ff124}}
      - {{name: pathspec, version: 0.12.1, sha256: a0d503e138a4c123b27490a4f7beda6a01c6f288df0e4a8b79c7eb0dc7b4cc08}}
"""
    matrix = project(tmp_path / "p", text)
    done = builder(matrix, "all", "-j", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    eggs = tmp_path / "p" / "eggs" / "debian12"
    names = sorted(json.loads((eggs / "manifest.json").read_text())["artifacts"])
    assert names == [
        "mesonpkg-1.0-cp311-cp311-linux_x86_64.whl", "mesonpkg-1.0-py3.11-linux-x86_64.egg",
        "skbuildpkg-1.0-cp311-cp311-linux_x86_64.whl", "skbuildpkg-1.0-py3.11-linux-x86_64.egg",
    ], names
    for package, backend in (("mesonpkg", "mesonpy"), ("skbuildpkg", "scikit_build_core.build")):
        cell = tmp_path / "p" / ".builder" / "work" / "cells" / "debian12" / package
        log = (cell / "build.log").read_text()
        assert f"build backend {backend}: its requirements are met" in log
        assert "build_requires installed into" in log
        test = json.loads((cell / "test.json").read_text())
        for check in test["details"]["checks"].values():  # egg and wheel: loaded by the extension loader
            assert check["ok"] and check["extensions"] == {f"{package}._speed": "extension"}, check
            assert check["compilers"] == [], check  # the runtime image has no compiler
            assert check["test"]["ran"] and check["test"]["returncode"] == 0, check  # the config setting reached the build

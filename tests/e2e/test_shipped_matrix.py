"""`python -m builder all` on the shipped matrix, then offline installs from what it published."""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

from .conftest import REPO, SHIPPED_JUNIT, builder, docker_run, in_terminal, project

PLATFORMS = ("debian11-py27", "debian12-py27", "debian12")
PACKAGES = ("simplejson", "PyYAML", "MarkupSafe", "six", "python_dateutil", "psycopg2")


def test_every_cell_passes_and_the_summary_says_so(shipped: tuple[Path, str]) -> None:
    _, out = shipped
    assert "packages × platforms" in out
    assert "FAILED" not in out
    for platform in PLATFORMS:
        assert f"[{platform}/pyyaml] publish: passed" in out
    root, _ = shipped
    suite = ElementTree.parse(root / SHIPPED_JUNIT).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "20" and suite.get("failures") == "0"
    # The vagrant platform: its two packages, built and tested on Vagrant machines.
    for package in ("simplejson", "six"):
        assert f"[debian12-vm/{package}] publish: passed" in out


def test_eggs_and_wheels_are_published_with_a_truthful_manifest(shipped: tuple[Path, str]) -> None:
    root, _ = shipped
    for platform in PLATFORMS:
        folder = root / "eggs" / platform
        names = sorted(p.name for p in folder.iterdir() if p.suffix in (".egg", ".whl"))
        for package in PACKAGES:
            assert any(n.startswith(package + "-") and n.endswith(".egg") for n in names), (package, names)
            assert any(n.lower().startswith(package.lower() + "-") and n.endswith(".whl") for n in names), (package, names)
        manifest = json.loads((folder / "manifest.json").read_text())
        assert sorted(manifest["artifacts"]) == names
        for name, entry in manifest["artifacts"].items():
            assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == entry["sha256"]
            assert entry["input_key"] and entry["build_image"].startswith("sha256:")
        index = (folder / "index.html").read_text()
        assert all(name in index for name in names)
    vm = sorted(p.name for p in (root / "eggs" / "debian12-vm").iterdir() if p.suffix in (".egg", ".whl"))
    assert vm == ["simplejson-3.19.3-cp311-cp311-linux_x86_64.whl", "simplejson-3.19.3-py3.11-linux-x86_64.egg",
                  "six-1.16.0-py2.py3-none-any.whl", "six-1.16.0-py3.11.egg"], vm
    assert builder(root / "matrix.yaml", "verify").returncode == 0


def test_a_warm_run_rebuilds_nothing_and_force_rebuilds(shipped: tuple[Path, str]) -> None:
    root, _ = shipped
    manifest = (root / "eggs" / "debian12" / "manifest.json").read_bytes()
    warm = builder(root / "matrix.yaml", "all")
    assert warm.returncode == 0, warm.stdout + warm.stderr
    assert warm.stdout.count("up to date: published with the same inputs") == 20
    assert "build: passed" not in warm.stdout
    assert (root / "eggs" / "debian12" / "manifest.json").read_bytes() == manifest
    forced = builder(root / "matrix.yaml", "all", "--force", "--cell", "debian12/six")
    assert forced.returncode == 0 and "[debian12/six] build: passed" in forced.stdout, forced.stdout


def _runtime(root: Path, platform: str) -> str:
    manifest = json.loads((root / "eggs" / platform / "manifest.json").read_text())
    return next(iter(manifest["artifacts"].values()))["runtime_image"]


def _tool(name: str) -> Path:
    return next((REPO / ".builder" / "cache" / "sources").glob(f"*/{name}"))


def test_pip_installs_offline_from_the_published_index_on_python3(shipped: tuple[Path, str]) -> None:
    root, _ = shipped
    pip = _tool("pip-24.2-py3-none-any.whl")
    script = (
        "python3 -m venv --without-pip /tmp/v && "
        "/tmp/v/bin/python /pip.whl/pip install -q --no-index --find-links /eggs/index.html "
        "PyYAML simplejson MarkupSafe python-dateutil psycopg2 && "
        "/tmp/v/bin/python -c 'import yaml, simplejson._speedups, markupsafe._speedups, dateutil.parser, psycopg2; "
        "assert yaml.__with_libyaml__; print(\"ok\")'"
    )
    done = docker_run(_runtime(root, "debian12"), script, f"{root / 'eggs' / 'debian12'}:/eggs:ro", f"{pip}:/pip.whl:ro")
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout + done.stderr


@pytest.mark.parametrize("platform", ["debian11-py27", "debian12-py27"])
def test_easy_install_and_pip_work_offline_on_python27(shipped: tuple[Path, str], platform: str) -> None:
    root, _ = shipped
    venv = _tool("virtualenv-16.7.12-py2.py3-none-any.whl")
    check = "import yaml, simplejson, markupsafe, dateutil.parser, psycopg2; assert yaml.__with_libyaml__; print('ok')"
    script = (
        "export HOME=/tmp; python2.7 -c \"import zipfile; zipfile.ZipFile('/venv.whl').extractall('/tmp/vt')\" && "
        "python2.7 /tmp/vt/virtualenv.py -q --no-download /tmp/e && "
        "/tmp/e/bin/easy_install -q --always-unzip --index-url file:///nonexistent -f /eggs/ "
        "PyYAML simplejson MarkupSafe six python-dateutil psycopg2 && "
        f"/tmp/e/bin/python -c \"{check}\" && "
        "python2.7 /tmp/vt/virtualenv.py -q --no-download /tmp/w && "
        "/tmp/w/bin/pip install -q --no-index --find-links /eggs/index.html PyYAML simplejson MarkupSafe python-dateutil psycopg2 && "
        f"/tmp/w/bin/python -c \"{check}\""
    )
    done = docker_run(_runtime(root, platform), script, f"{root / 'eggs' / platform}:/eggs:ro", f"{venv}:/venv.whl:ro")
    assert done.returncode == 0 and done.stdout.split() == ["ok", "ok"], done.stdout + done.stderr


def test_cells_run_as_separate_jobs_merge_into_the_same_index(shipped: tuple[Path, str], tmp_path: Path) -> None:
    root, _ = shipped
    text = (REPO / "matrix.yaml").read_text()
    parts = []
    for cell in ("debian12/markupsafe", "debian12/python-dateutil"):  # dateutil's job builds six too
        part = project(tmp_path / cell.replace("/", "-"), text)
        done = builder(part, "all", "--cell", cell)
        assert done.returncode == 0, done.stdout + done.stderr
        parts.append(str(part.parent))
    merged = project(tmp_path / "merged", text)
    done = builder(merged, "merge", *parts)
    assert done.returncode == 0, done.stdout + done.stderr
    manifest = json.loads((merged.parent / "eggs" / "debian12" / "manifest.json").read_text())
    assert sorted(manifest["cells"]) == ["debian12/markupsafe", "debian12/python-dateutil", "debian12/six"]
    one_run = json.loads((root / "eggs" / "debian12" / "manifest.json").read_text())
    for cell_id, entry in manifest["cells"].items():
        assert entry["artifacts"] == one_run["cells"][cell_id]["artifacts"]
        assert entry["input_key"] == one_run["cells"][cell_id]["input_key"]
    assert builder(merged, "verify").returncode == 0
    # A part built from other inputs than the matrix says is refused, and nothing is written.
    other = project(tmp_path / "other", text.replace("version: 1.1.1", "version: 1.1.0"))
    done = builder(other, "merge", *parts)
    assert done.returncode != 0 and "but the matrix pins 1.1.0" in done.stderr, done.stderr
    assert not (other.parent / "eggs").exists()


def test_a_terminal_gets_a_live_view_of_running_cells(shipped: tuple[Path, str]) -> None:
    root, _ = shipped
    code, text = in_terminal([sys.executable, "-m", "builder", "all", "--force", "--cell", "debian12/six"], root)
    assert code == 0, text
    assert "debian12/six" in text and "cells finished" in text, text

"""check-imports for real: the scanner under Debian 11's Python 2.7, and an application checked
against what a real `builder all` published, on debian11-py27 and debian12."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from builder.machines.docker import DockerBackend
from builder.matrix import load as config

from .conftest import FIXTURES, REPO, builder, docker_run, project

GUEST = REPO / "builder" / "guest"


@pytest.fixture(scope="module")
def py27_runtime(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The debian11-py27 runtime image of the shipped matrix (made once per machine)."""
    matrix = config.load(project(tmp_path_factory.mktemp("images"), (REPO / "matrix.yaml").read_text()))
    platform = matrix.platform("debian11-py27")
    return DockerBackend().prepare(matrix, platform, {}, lambda line: None).runtime


def test_the_scanner_parses_python2_code_under_python27(py27_runtime: str) -> None:
    done = docker_run(py27_runtime, "python2.7 /g/imports.py scan /app", f"{GUEST}:/g:ro",
                      f"{FIXTURES / 'imports' / 'py2only'}:/app:ro")
    assert done.returncode == 0, done.stdout + done.stderr
    found = json.loads(done.stdout)
    assert found["python"].startswith("2.7.") and found["problems"] == []
    assert {(e["file"], e["line"], e["spec"]) for e in found["imports"]} == {
        ("legacy.py", 2, "urllib2"), ("pkg/a.py", 2, "StringIO"),
    }
    # Python 2's implicit relative import: `import b` in pkg/a.py is pkg.b, the application's own.
    assert {(e["file"], e["spec"]) for e in found["own"]} == {("legacy.py", "pkg.a"), ("pkg/a.py", "pkg.b")}


def test_the_trier_under_python27(py27_runtime: str) -> None:
    done = docker_run(py27_runtime, "python2.7 /g/imports.py try urllib2 StringIO:StringIO email:mime "
                      "collections:nope no_such_module os.path", f"{GUEST}:/g:ro")
    assert done.returncode == 1, done.stdout + done.stderr
    results = {r["spec"]: r for r in json.loads(done.stdout)["results"]}
    assert [s for s, r in results.items() if r["ok"]] == ["urllib2", "StringIO:StringIO", "email:mime", "os.path"]
    assert results["collections:nope"]["error"] == "cannot import name 'nope' from 'collections'"
    assert (results["no_such_module"]["error_type"], results["no_such_module"]["error"]) == (
        "ImportError", "No module named no_such_module")


# --- check-imports against what a real `builder all` published ------------------------------------

DEMO = FIXTURES / "imports" / "demoapp"


def rows(out: str, where: str) -> list[str]:
    """The failure table's rows for a place (the optional imports' table comes after it)."""
    failures = out.split("optional import(s)")[0]
    return [line for line in failures.splitlines() if line.startswith(where)]


@pytest.mark.parametrize("platform", ["debian11-py27", "debian12"])
def test_the_demo_application_imports_with_what_was_published(shipped: tuple[Path, str], platform: str) -> None:
    root, _ = shipped
    done = builder(root / "matrix.yaml", "check-imports", str(DEMO), "--platform", platform,
                   "--requirements", str(DEMO / "requirements.txt"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every import works" in done.stdout and "import(s) fail" not in done.stdout
    report = json.loads((root / ".builder" / "work" / "check-imports" / platform / "demoapp" / "report.json").read_text())
    # The requirements and, through python-dateutil's own metadata, six: all eggs, all verified.
    assert sorted(name.split("-")[0] for name in report["installed"]) == [
        "MarkupSafe", "PyYAML", "psycopg2", "python_dateutil", "simplejson", "six"]
    assert all(name.endswith(".egg") for name in report["installed"])
    assert report["own"] == 5 and report["tried"] == 17
    # The guarded `import cdecimal` is optional: reported, not a failure.
    assert [f["where"] for f in report["optional"]] == ["demo/views.py:13"]


def test_an_import_nothing_provides_fails_naming_it(shipped: tuple[Path, str], tmp_path: Path) -> None:
    root, _ = shipped
    app = tmp_path / "demoapp"
    shutil.copytree(DEMO, app)
    (app / "demo" / "cache.py").write_text('"""A cache in front of the store."""\nimport redis\n')
    (app / "tests").mkdir()
    (app / "tests" / "test_views.py").write_text("import pytest\n")  # excluded below: not the application
    done = builder(root / "matrix.yaml", "check-imports", str(app), "--platform", "debian12", "--format", "wheel",
                   "--exclude", "tests")
    assert done.returncode == 9, done.stdout + done.stderr
    assert "1 import(s) fail" in done.stdout
    [row] = rows(done.stdout, "demo/cache.py:2")
    assert "import redis" in row and "No module named 'redis'" in row and row.endswith("no published artifact provides it")
    assert "1 import(s) of" in done.stderr and "fail on debian12" in done.stderr


def test_requirements_decide_what_is_installed_and_must_be_published(shipped: tuple[Path, str], tmp_path: Path) -> None:
    root, _ = shipped
    without = tmp_path / "without-markupsafe.txt"
    without.write_text("PyYAML==5.4.1\nsimplejson\npython-dateutil\npsycopg2\n")
    done = builder(root / "matrix.yaml", "check-imports", str(DEMO), "--platform", "debian11-py27", "--requirements", str(without))
    assert done.returncode == 9, done.stdout + done.stderr
    failing = rows(done.stdout, "demo/views.py:")
    assert [row.split()[0] for row in failing] == ["demo/views.py:5", "demo/views.py:5", "demo/views.py:6"]
    assert all(row.endswith("MarkupSafe: published, but not in the requirements") for row in failing), failing
    unpublished = tmp_path / "unpublished.txt"
    unpublished.write_text("PyYAML==5.4.1\nrequests==2.31.0\n")
    done = builder(root / "matrix.yaml", "check-imports", str(DEMO), "--platform", "debian11-py27",
                   "--requirements", str(unpublished))
    assert done.returncode == 11, done.stdout + done.stderr
    assert f"requests==2.31.0 (needed by {unpublished}:2): no published artifact" in done.stderr
    assert "python -m builder all --package requests --platform debian11-py27" in done.stderr

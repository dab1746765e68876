"""check-imports for real: the scanner under Debian 11's Python 2.7, and an application checked
against what a real `builder all` published, on debian11-py27 and debian12."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder import config
from builder.backends.docker import DockerBackend

from .conftest import FIXTURES, REPO, docker_run, project

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

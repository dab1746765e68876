"""The import scanner and the import trier of builder/guest/imports.py, run on the host's Python 3
over fixture trees. (Python 2.7 parsing it for real is in tests/e2e/test_check_imports.py.)"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from builder.guest import imports

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "imports"
SCRIPT = Path(imports.__file__)


def where(entries: list[dict]) -> set[tuple[str, int, str]]:
    return {(e["file"], e["line"], e["spec"]) for e in entries}


@pytest.fixture(scope="module")
def forms() -> dict:
    return imports.scan(str(FIXTURES / "forms"))


def test_every_form_of_import_is_found_with_its_place(forms: dict) -> None:
    assert where(forms["imports"]) == {
        ("app.py", 4, "os"),
        ("app.py", 5, "sys"),
        ("app.py", 6, "xml.dom.minidom"),  # import a.b.c: the whole dotted name
        ("app.py", 7, "json"),  # import json as j, textwrap: one entry per name
        ("app.py", 7, "textwrap"),
        ("app.py", 8, "collections:OrderedDict"),  # from x import y: y is checked too
        ("app.py", 8, "collections:namedtuple"),
        ("app.py", 9, "email:mime"),  # y a submodule
        ("app.py", 18, "pickle"),  # the except ImportError fallback is required
        ("app.py", 34, "collections:no_such_name"),
        ("app.py", 38, "nosuchmodule_in_a_function"),  # inside a function
        ("app.py", 43, "textwrap:dedent"),  # inside a class
        ("app.py", 47, "string:Template"),  # inside a method's with block
        ("src/other/core.py", 1, "markupsafe"),
    }
    statements = {e["statement"] for e in forms["imports"]}
    assert {"import json as j", "import textwrap", "from collections import OrderedDict"} <= statements


def test_imports_guarded_by_import_errors_or_the_interpreter_are_optional(forms: dict) -> None:
    optional = {(e["line"], e["spec"]): e["guard"] for e in forms["optional"]}
    assert optional == {
        (16, "cPickle"): "try/except ImportError at line 15",
        (21, "simplejson:loads"): "try/except ImportError at line 20",  # except (ValueError, ImportError)
        (25, "this_runs_only_when_simplejson_imports"): "try/except ImportError at line 20",  # its else:
        (28, "urllib2"): "condition at line 27",  # if sys.version_info[0] == 2:
        (30, "urllib.request"): "condition at line 27",
        (32, "typing"): "condition at line 31",  # if TYPE_CHECKING:
    }


def test_future_imports_are_directives_not_imports(forms: dict) -> None:
    assert {(f["file"], f["line"], f["feature"]) for f in forms["future"]} == {
        ("app.py", 2, "absolute_import"),
        ("app.py", 2, "print_function"),
    }
    assert all(e["module"] != "__future__" for e in forms["imports"] + forms["optional"] + forms["own"])


def test_own_modules_are_set_apart_and_relative_imports_resolved(forms: dict) -> None:
    assert where(forms["own"]) == {
        ("app.py", 10, "mypkg"),
        ("app.py", 11, "mypkg:helpers"),
        ("app.py", 12, "mypkg.sub:thing"),
        ("app.py", 13, "other.core"),  # src/ layout: src/ is a sys.path entry
        ("mypkg/__init__.py", 1, "mypkg:helpers"),  # from . import helpers (in a package's __init__)
        ("mypkg/__init__.py", 2, "mypkg.helpers:value"),  # from .helpers import value
        ("mypkg/sub/__init__.py", 1, "mypkg:helpers"),  # from .. import helpers
        ("mypkg/sub/__init__.py", 2, "mypkg.helpers:value"),
        ("mypkg/sub/deep.py", 1, "mypkg.sub:thing"),  # from . import thing (in a module)
        ("mypkg/sub/deep.py", 2, "mypkg.sub.missing:nothing"),
        ("mypkg/sub/deep.py", 3, "mypkg.sub"),  # from mypkg.sub import *
        ("scripts/tool.py", 1, "sibling"),  # a script's own folder is on its sys.path
        ("scripts/tool.py", 2, "mypkg.helpers"),
        ("src/other/__init__.py", 1, "other:core"),
    }


def test_what_cannot_work_is_a_problem_with_its_place_not_a_crash(forms: dict) -> None:
    assert {(p["file"], p["line"], p["error"]) for p in forms["problems"]} == {
        ("broken.py", 1, "SyntaxError: invalid syntax"),
        ("data/loose.py", 1, "ImportError: relative import in a file that is not in a package"),
        ("mypkg/helpers.py", 2, "ImportError: relative import beyond the top-level package"),
        ("mypkg/sub/deep.py", 2,
         "ImportError: from .missing import nothing: the application has no module mypkg.sub.missing"),
    }


def test_hidden_folders_are_not_scanned(forms: dict) -> None:
    every = forms["imports"] + forms["optional"] + forms["own"] + forms["problems"]
    assert not any(e["file"].startswith(".hidden/") for e in every)
    assert forms["files"] == 11


def test_python2_code_is_a_syntax_error_under_python3_with_its_line() -> None:
    found = imports.scan(str(FIXTURES / "py2only"))
    assert [(p["file"], p["line"]) for p in found["problems"]] == [("legacy.py", 6)]
    assert found["problems"][0]["error"].startswith("SyntaxError: ")
    # Python 3 has no implicit relative imports: pkg/a.py's `import b` is the top-level b.
    assert ("pkg/a.py", 1, "b") in where(found["imports"])


def test_coding_cookies_null_bytes_virtualenvs_and_a_tree_that_is_a_package(tmp_path: Path) -> None:
    app = tmp_path / "myapp"
    app.mkdir()
    (app / "__init__.py").write_text("from . import views\nfrom myapp.views import page\n")
    (app / "views.py").write_bytes(b"# -*- coding: latin-1 -*-\nTITLE = '\xe9t\xe9'\nimport yaml\n")
    (app / "nul.py").write_bytes(b"import os\x00\n")
    venv = app / "env"
    (venv / "lib").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (venv / "lib" / "thing.py").write_text("import something_installed\n")
    found = imports.scan(str(app))
    assert where(found["own"]) == {("__init__.py", 1, "myapp:views"), ("__init__.py", 2, "myapp.views:page")}
    assert where(found["imports"]) == {("views.py", 3, "yaml")}
    assert [(p["file"], p["error"].split(":")[0]) for p in found["problems"]] == [("nul.py", "SyntaxError")]


def test_windows_line_ends_and_no_final_newline_keep_their_lines(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_bytes(b"import os\r\nfrom json import (\r\n    loads)\r\nimport re")
    found = imports.scan(str(tmp_path))
    assert not found["problems"] and where(found["imports"]) == {("a.py", 1, "os"), ("a.py", 2, "json:loads"), ("a.py", 4, "re")}


def test_setup_py_is_build_time_code_and_more_can_be_excluded(tmp_path: Path) -> None:
    (tmp_path / "setup.py").write_text("from setuptools import setup\n")
    (tmp_path / "app.py").write_text("import yaml\n")
    (tmp_path / "tests" / "unit").mkdir(parents=True)
    (tmp_path / "tests" / "unit" / "test_app.py").write_text("import pytest\n")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "setup.py").write_text("import distutils_helper\n")  # only the root's is excluded
    found = imports.scan(str(tmp_path))
    assert found["excluded"] == ["setup.py"]
    assert {e["spec"] for e in found["imports"]} == {"yaml", "pytest", "distutils_helper"}
    found = imports.scan(str(tmp_path), ["setup.py", "tests", "lib/*.py"])
    assert found["excluded"] == ["lib/setup.py", "setup.py", "tests/unit/test_app.py"]
    assert {e["spec"] for e in found["imports"]} == {"yaml"}
    done = run("scan", str(tmp_path), "--no-default-excludes", "--exclude", "tests/")
    assert {e["spec"] for e in json.loads(done.stdout)["imports"]} == {"yaml", "setuptools:setup", "distutils_helper"}


def test_imports_in_every_kind_of_block(tmp_path: Path) -> None:
    (tmp_path / "blocks.py").write_text(
        "import sys\n"
        "for arg in sys.argv:\n    import in_for\nelse:\n    import in_for_else\n"
        "while False:\n    import in_while\n"
        "async def handler():\n    import in_async\n"
        "match sys.argv:\n    case [_, 'x']:\n        import in_case\n"
        "try:\n    pass\nexcept ValueError:\n    import in_handler\nfinally:\n    import in_finally\n"
        "value = [__import__('not_a_statement') for _ in ()]\n")
    found = imports.scan(str(tmp_path))
    assert [e["spec"] for e in found["imports"]] == [
        "sys", "in_for", "in_for_else", "in_while", "in_async", "in_case", "in_handler", "in_finally"]
    assert [e["line"] for e in found["imports"]] == [1, 3, 5, 7, 9, 12, 16, 18]


def test_extension_modules_built_in_place_are_the_applications_own(tmp_path: Path) -> None:
    (tmp_path / "fast").mkdir()
    (tmp_path / "fast" / "__init__.py").write_text("from fast._speed import go\n")
    (tmp_path / "fast" / "_speed.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    found = imports.scan(str(tmp_path))
    assert not found["problems"] and where(found["own"]) == {("fast/__init__.py", 1, "fast._speed:go")}


# --- try -------------------------------------------------------------------------------------

@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on the children's PYTHONPATH, holding modules that fail in each way."""
    folder = tmp_path / "site"
    (folder / "pkg").mkdir(parents=True)
    (folder / "pkg" / "__init__.py").write_text("ATTR = 1\n")
    (folder / "pkg" / "sub.py").write_text("")
    (folder / "pkg" / "needs.py").write_text("import not_installed_anywhere\n")
    (folder / "broken.py").write_text("raise RuntimeError('caf\\xe9 needs a display')\n")
    (folder / "crash.py").write_text("import ctypes\nctypes.string_at(0)\n")
    (folder / "hangs.py").write_text("import time\ntime.sleep(60)\n")
    monkeypatch.setenv("PYTHONPATH", str(folder))
    return folder


def test_try_reports_each_import_as_ok_or_its_exception(site: Path) -> None:
    specs = ["os", "pkg", "pkg:ATTR", "pkg:sub", "pkg:nothing", "pkg:needs", "pkg.needs", "missing_module",
             "broken", "crash", "pkg.sub", "os"]
    results = {r["spec"]: r for r in imports.try_imports(specs)}
    assert len(results) == 11  # each spec tried once
    for ok in ("os", "pkg", "pkg:ATTR", "pkg:sub", "pkg.sub"):
        assert results[ok]["ok"], results[ok]
    assert (results["pkg:nothing"]["error_type"], results["pkg:nothing"]["error"]) == (
        "ImportError", "cannot import name 'nothing' from 'pkg'")
    # A submodule that exists but fails names what it lacks, not itself.
    for spec in ("pkg:needs", "pkg.needs"):
        assert results[spec]["error_type"] == "ModuleNotFoundError"
        assert results[spec]["error"] == "No module named 'not_installed_anywhere'"
    assert results["missing_module"]["error"] == "No module named 'missing_module'"
    assert (results["broken"]["error_type"], results["broken"]["error"]) == ("RuntimeError", "caf\xe9 needs a display")
    assert results["crash"] == {"spec": "crash", "module": "crash", "name": None, "ok": False, "error_type": "Crash",
                                "error": "the interpreter died while importing it (signal 11)"}


def test_a_hung_import_is_charged_and_the_rest_go_on(site: Path) -> None:
    results = imports.try_imports(["hangs", "pkg"], timeout=1)
    assert results[0]["error"] == "its import did not finish within 1 s"
    assert results[1]["ok"]


def test_the_script_does_not_see_its_own_folder(site: Path) -> None:
    # imports.py sits beside _common.py and check.py: they must not count as installed modules.
    results = imports.try_imports(["_common", "check"])
    assert [r["ok"] for r in results] == [False, False]


# --- the command line --------------------------------------------------------------------------

def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_scan_command_prints_json_and_exits_1_on_a_problem(tmp_path: Path) -> None:
    done = run("scan", str(FIXTURES / "forms"))
    assert done.returncode == 1 and json.loads(done.stdout)["problems"]
    out = tmp_path / "scan.json"
    done = run("scan", str(FIXTURES / "forms" / "scripts"), "--out", str(out))
    assert done.returncode == 0 and done.stdout == ""
    assert where(json.loads(out.read_text())["imports"]) == {("tool.py", 2, "mypkg.helpers")}


def test_try_command_exit_status(site: Path) -> None:
    good = run("try", "os", "pkg:sub")
    assert good.returncode == 0 and json.loads(good.stdout)["ok"] is True
    bad = run("try", "os", "missing_module")
    assert bad.returncode == 1 and json.loads(bad.stdout)["ok"] is False


def test_check_command_tries_what_the_tree_does_not_provide(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    done = run("check", str(FIXTURES / "forms"), "--out", str(out))
    assert done.returncode == 1
    result = json.loads(out.read_text())
    failed = {(f["file"], f["line"]) for f in result["failures"]}
    assert {("app.py", 34), ("app.py", 38), ("broken.py", 1), ("mypkg/sub/deep.py", 2)} <= failed
    assert not {("app.py", 4), ("app.py", 9), ("app.py", 10)} & failed  # os, email.mime, own mypkg
    assert "app.py:38: ModuleNotFoundError: No module named 'nosuchmodule_in_a_function'" in done.stderr
    # Python 3 has no cPickle or urllib2: optional, so listed, not failures.
    assert {e["spec"] for e in result["optional_missing"]} >= {"cPickle", "urllib2"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "a command is needed"),
        (("scan",), "scan needs one folder"),
        (("scan", "/nonexistent-folder"), "/nonexistent-folder is not a folder"),
        (("try",), "try needs at least one module"),
        (("try", "os", "--timeout", "soon"), "--timeout needs a number"),
        (("check", ".", "--color"), "unknown option --color"),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...], message: str) -> None:
    done = run(*args)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_scripts_beside_the_cell_scripts_leave_cells_up_to_date(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from builder.cells import cell as cells

    copy = tmp_path / "guest"
    shutil.copytree(cells.GUEST_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cells, "GUEST_DIR", copy)
    before = cells.guest_digest()
    (copy / "imports.py").write_text("# changed\n")
    (copy / "deploy_host.py").write_text("")
    assert cells.guest_digest() == before
    (copy / "check.py").write_text((copy / "check.py").read_text() + "\n")
    assert cells.guest_digest() != before

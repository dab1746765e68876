"""Two kinds of false failure check-imports gave on a real application: its own optional
speedup module, imported under try/except ImportError and absent from the tree, and a branch
chosen by a feature test of a module (hasattr/getattr), which may never run on a given Python."""
from __future__ import annotations

from pathlib import Path

from builder.guest import imports

APP = {
    "app/__init__.py": "",
    "app/core.py": """\
try:
    from app._speedups import scan          # compiled, not in the source tree
except ImportError:
    scan = None
try:
    import app._cspeedups as fast
except (ValueError, ImportError):
    fast = None
import app.nothere                          # unguarded: still a failure
""",
    "app/net.py": """\
import ssl
if hasattr(ssl, 'match_hostname'):
    from ssl import match_hostname
else:
    from backports.ssl_match_hostname import match_hostname
if not hasattr(ssl, "create_default_context"):
    import backports.ssl_context
if getattr(ssl, 'HAS_SNI', None):
    import idna
if getattr(ssl, 'PROTOCOL_TLS', None) is None:
    import tls_shim
if getattr(ssl, 'OP_NO_SSLv2'):             # no default: a plain attribute read, not a test
    import required_one
""",
}


def scanned(tmp_path: Path) -> dict:
    for rel, text in APP.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return imports.scan(str(tmp_path))


def test_an_own_module_imported_under_except_import_error_is_optional(tmp_path: Path) -> None:
    found = scanned(tmp_path)
    problems = [(p["file"], p["line"]) for p in found["problems"]]
    assert problems == [("app/core.py", 9)], found["problems"]
    optional = {(e["file"], e["line"], e["spec"]): e["guard"] for e in found["optional"]}
    assert optional[("app/core.py", 2, "app._speedups:scan")] == "try/except ImportError at line 1"
    assert optional[("app/core.py", 6, "app._cspeedups")] == "try/except ImportError at line 5"


def test_a_branch_chosen_by_hasattr_or_getattr_is_optional(tmp_path: Path) -> None:
    found = scanned(tmp_path)
    optional = {(e["line"], e["spec"]): e["guard"] for e in found["optional"] if e["file"] == "app/net.py"}
    assert optional == {
        (3, "ssl:match_hostname"): "condition at line 2",
        (5, "backports.ssl_match_hostname:match_hostname"): "condition at line 2",
        (7, "backports.ssl_context"): "condition at line 6",
        (9, "idna"): "condition at line 8",
        (11, "tls_shim"): "condition at line 10",
    }
    required = {(e["line"], e["spec"]) for e in found["imports"] if e["file"] == "app/net.py"}
    assert required == {(1, "ssl"), (13, "required_one")}


def python2() -> str | None:
    """A Python 2.7 on this machine, if there is one (pyenv's, or one on PATH)."""
    import os
    import shutil
    import subprocess

    for candidate in (shutil.which("python2.7"), os.path.expanduser("~/.pyenv/versions/2.7.18/bin/python")):
        if candidate and os.path.isfile(candidate):
            if subprocess.run([candidate, "-c", "pass"], capture_output=True, check=False).returncode == 0:
                return candidate
    return None


def test_check_reports_a_failure_in_a_file_named_beyond_ascii_on_python2(tmp_path: Path) -> None:
    import subprocess

    import pytest

    found = python2()
    if found is None:
        pytest.skip("no Python 2.7 here; tests/e2e/test_check_imports.py runs the script on Debian 11's")
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "café.py").write_text("import nosuchmod_here\n")
    done = subprocess.run([found, str(imports.__file__), "check", str(tmp_path / "tree")], capture_output=True,
                          check=False, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"}, cwd=tmp_path)
    assert done.returncode == 1, done.stderr.decode(errors="replace")
    assert "café.py:1: " in done.stderr.decode("utf-8") and b"Traceback" not in done.stderr

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

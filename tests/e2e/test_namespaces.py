"""Namespace packages for real: a PEP 420 one with a C part (zope.interface 8, no zope/__init__.py)
and a pure one with `extensions: []` (zope.event 6) on Debian 12; the pkg_resources-style ones
(zope/__init__.py calling declare_namespace in the egg, a -nspkg.pth file in the wheel) of the
Python 2.7 era on Debian 11, and check-imports of an application that imports both distributions
of the one `zope` namespace. Each artifact's modules must be found, imported and its compiled
module proven loaded as an extension; the scan found none of them before."""
from __future__ import annotations

import json
from pathlib import Path

from .conftest import builder, project
from .sdists import PY3_PLATFORM, PY27_PLATFORM

# zope.interface 8 and zope.event 6 declare `license = "ZPL-2.1"`, which Debian 12's setuptools
# 66 refuses: the build gets a newer one, verified, on its PYTHONPATH.
SETUPTOOLS = "{name: setuptools, version: 80.9.0, sha256: 062d34222ad13e0cc312a4c02d73f059e86a4acbfbdea8f8f76b28c99f306922}"

DEBIAN12 = PY3_PLATFORM + f"""\
  - name: zope.interface      # PEP 420: no zope/__init__.py in the sdist, the egg or the wheel
    version: "8.7"
    sha256: 0b47b62e8d0d99b24bcdd32f4f2120425e5019c3bee2ad69a0e1d75737487a96
    build_requires: [{SETUPTOOLS}]
  - name: zope.event          # pure Python, PEP 420 too
    version: "6.2"
    sha256: b97d5d6327067ee6b9dfcbdf606ade9ade70991e19c162e808ea39e5fcf0f8d3
    build_requires: [{SETUPTOOLS}]
    extensions: []
"""

PY27 = PY27_PLATFORM + """\
  - name: zope.interface      # pkg_resources-style: namespace_packages=['zope']
    version: 5.5.2
    sha256: bfee1f3ff62143819499e348f5b8a7f3aa0259f9aca5e0ddae7391d059dce671
  - name: zope.event
    version: "4.6"
    sha256: 81d98813046fc86cc4136e3698fee628a3282f9c320db18658c21749235fce80
    extensions: []
"""

APP = """\
from zope.interface import Interface, implementer
from zope.event import notify, subscribers
from zope.interface import no_such_interface_name
from zope.event import no_such_event_name
import zope.component
"""

C_MODULE = "zope.interface._zope_interface_coptimizations"


def results(root: Path, platform: str, cell: str) -> dict[str, dict]:
    folder = root / ".builder" / "work" / "cells" / platform / cell / "test"
    return {fmt: json.loads((folder / fmt / "check-result.json").read_text()) for fmt in ("egg", "wheel")}


def assert_scanned(found: dict[str, dict], modules: set[str], compiled: str | None) -> None:
    for fmt, result in found.items():
        assert result["ok"], (fmt, result["reasons"])
        assert modules <= set(result["modules"]), (fmt, result["modules"])
        assert result["namespaces"] == ["zope"], (fmt, result["namespaces"])
        assert not result["import_failures"], (fmt, result["import_failures"])
        if compiled:
            assert result["extensions"] == {compiled: "extension"}, (fmt, result["extensions"])
        else:
            assert result["extensions"] == {}, (fmt, result["extensions"])


def test_pep420_namespace_packages_on_debian12(tmp_path: Path) -> None:
    root = project(tmp_path / "p", DEBIAN12)
    done = builder(root, "all", "-j", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    interface = results(root.parent, "debian12", "zope-interface")
    assert_scanned(interface, {"zope.interface", "zope.interface.declarations", "zope.interface.common.mapping",
                               "zope.interface.tests", C_MODULE}, C_MODULE)
    for fmt, result in interface.items():
        # zope.interface's own tests import zope.testing, a test-only requirement: said apart.
        assert "zope.interface.tests.test_ro" in result["test_imports_apart"], (fmt, result["test_imports_apart"])
        assert "zope.testing" in result["test_imports_apart"]["zope.interface.tests.test_ro"]
    assert_scanned(results(root.parent, "debian12", "zope-event"), {"zope.event", "zope.event.classhandler"}, None)
    log = (root.parent / ".builder" / "work" / "cells" / "debian12" / "zope-interface" / "test.log").read_text()
    assert "pure-Python fallback" not in log and "0 modules" not in log
    published = sorted(p.name for p in (root.parent / "eggs" / "debian12").iterdir() if p.suffix in (".egg", ".whl"))
    assert len(published) == 4, published


def test_pkg_resources_namespaces_on_python27_and_check_imports_names_each_distribution(tmp_path: Path) -> None:
    root = project(tmp_path / "p", PY27)
    done = builder(root, "all", "-j", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    # The egg ships zope/__init__.py (declare_namespace); the wheel leaves it out and installs a
    # zope.interface-5.5.2-py2.7-nspkg.pth instead, which makes `zope` at interpreter start.
    assert_scanned(results(root.parent, "debian11-py27", "zope-interface"),
                   {"zope.interface", "zope.interface.declarations", C_MODULE}, C_MODULE)
    assert_scanned(results(root.parent, "debian11-py27", "zope-event"), {"zope.event", "zope.event.classhandler"}, None)

    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text(APP)
    for fmt in ("egg", "wheel"):
        done = builder(root, "check-imports", str(app), "--platform", "debian11-py27", "--format", fmt)
        assert done.returncode == 9, done.stdout + done.stderr
        report = json.loads((root.parent / ".builder" / "work" / "check-imports" / "debian11-py27" / "app"
                             / "report.json").read_text())
        providers = {f["where"]: f["provider"] for f in report["failures"]}
        assert set(providers) == {"main.py:3", "main.py:4", "main.py:5"}, report["failures"]
        assert providers["main.py:3"].startswith("zope.interface 5.5.2 (") and "zope.event" not in providers["main.py:3"]
        assert providers["main.py:4"].startswith("zope.event 4.6 (") and "zope.interface" not in providers["main.py:4"]
        assert providers["main.py:5"].startswith("no published artifact provides it"), providers["main.py:5"]

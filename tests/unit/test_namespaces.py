"""Namespace packages in the test stage's module scan (builder/guest/check.py) and in what
check-imports says provides an import: synthetic eggs and wheels laid out as bdist_egg and
bdist_wheel lay out the real ones (PEP 420 zope.interface 8, pkg_resources-style zope.interface 5
with its -nspkg.pth), installed the way the test stage installs them, on the host's Python."""
from __future__ import annotations

import _csv
import sysconfig
import zipfile
from pathlib import Path

import pytest

from builder.guest import check
from builder.imports import check as imports
from builder.output import published

from .archives import make_zip
from .test_check_imports import matrix as matrix  # noqa: F401 (the fixture)
from .test_check_imports import put

# What setuptools 44 writes into a wheel of a project with namespace_packages=['zope'], in place
# of zope/__init__.py (one line; nested namespaces get one line each).
NSPKG = (
    "import sys, types, os;has_mfs = sys.version_info > (3, 5);p = os.path.join(sys._getframe(1).f_locals"
    "['sitedir'], *('zope',));importlib = has_mfs and __import__('importlib.util');has_mfs and __import__("
    "'importlib.machinery');m = has_mfs and sys.modules.setdefault('zope', importlib.util.module_from_spec("
    "importlib.machinery.PathFinder.find_spec('zope', [os.path.dirname(p)])));m = m or sys.modules.setdefault("
    "'zope', types.ModuleType('zope'));mp = (m or []) and m.__dict__.setdefault('__path__',[]);(p not in mp) "
    "and mp.append(p)\n"
)
NESTED = NSPKG.replace("*('zope',)", "*('google', 'cloud')")
EXT_SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")  # .cpython-311-x86_64-linux-gnu.so
# A real extension module of the host's Python: importable under any package as long as its last
# name is _csv (its init function is PyInit__csv), so it stands in for a compiled module.
CSV_SO = Path(_csv.__file__)  # the interpreter's own, wherever it lives (a virtualenv has none of its own)

ZOPE8 = {  # zope.interface 8: PEP 420, no zope/__init__.py
    "zope/interface/__init__.py": "from zope.interface._csv import reader\n",
    "zope/interface/declarations.py": "",
    "zope/interface/common/__init__.py": "",
    "zope/interface/common/mapping.py": "",
    "zope/interface/tests/__init__.py": "",
    "zope/interface/tests/test_ro.py": "import zope.testing.renormalizing\n",
    "zope/interface/tests/test_broken.py": "import zope.interface.no_such_module\n",
    "zope/interface/tests/test_ok.py": "import zope.interface\n",
    "zope/interface/templates/helper.py": "raise RuntimeError('a data file, never imported')\n",
}


def egg_of(folder: Path, name: str, files: dict[str, str | bytes], metadata: dict[str, str]) -> Path:
    members = dict(files) | {f"EGG-INFO/{k}": v for k, v in metadata.items()}
    return make_zip(folder / name, members)


def wheel_of(folder: Path, name: str, files: dict[str, str | bytes], metadata: dict[str, str]) -> Path:
    info = "-".join(name.split("-")[:2]) + ".dist-info"
    members = dict(files) | {f"{info}/{k}": v for k, v in metadata.items()}
    members[f"{info}/RECORD"] = "".join(f"{n},,\n" for n in members) + f"{info}/RECORD,,\n"
    return make_zip(folder / name, members)


def installed_egg(egg: Path, site: Path) -> tuple[str, list[str]]:
    """As install_egg's unzip: the egg becomes a folder; its files are the folder's."""
    target = site / egg.name
    check.unpack(str(egg), str(target))
    return str(target), check.tree_files(str(target))


def installed_wheel(wheel: Path, site: Path) -> tuple[str, list[str]]:
    """As pip: the wheel's files into the site folder; then its RECORD says what it installed."""
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return check.wheel_files(str(wheel), [str(site)])


# --- the scan ------------------------------------------------------------------------------------

def test_a_pep420_egg_is_scanned_through_its_namespace(tmp_path: Path) -> None:
    egg = egg_of(tmp_path, "zope.interface-8.7-py3.11-linux-x86_64.egg",
                 ZOPE8 | {f"zope/interface/_csv{EXT_SUFFIX}": b"\x7fELF"}, {"top_level.txt": "zope\n"})
    root, files = installed_egg(egg, tmp_path / "site")
    scan = check.scan_installed(root, files)
    assert scan["namespaces"] == ["zope"]
    assert scan["modules"] == [
        "zope.interface", "zope.interface._csv", "zope.interface.common", "zope.interface.common.mapping",
        "zope.interface.declarations", "zope.interface.tests", "zope.interface.tests.test_broken",
        "zope.interface.tests.test_ok", "zope.interface.tests.test_ro"]
    assert scan["compiled"] == {"zope.interface._csv": [f"zope/interface/_csv{EXT_SUFFIX}"]}
    # A folder without __init__ inside a regular package holds data: left alone, as before.
    assert scan["unplaced"] == {"zope.interface.templates.helper": ["zope/interface/templates/helper.py"]}


def test_a_pep420_wheel_without_top_level_txt(tmp_path: Path) -> None:
    files = {"jaraco/functools/__init__.py": "", "jaraco/functools/py.typed": "", "jaraco/context.py": ""}
    wheel = wheel_of(tmp_path, "jaraco.functools-4.0-py3-none-any.whl", files, {"METADATA": "Name: jaraco.functools\n"})
    site, record = installed_wheel(wheel, tmp_path / "site")
    scan = check.scan_installed(site, record)
    assert scan["top_level"] is None and scan["namespaces"] == ["jaraco"]
    assert scan["modules"] == ["jaraco.context", "jaraco.functools"]


def test_top_level_txt_keeps_stray_folders_out(tmp_path: Path) -> None:
    files = {"zope/event/__init__.py": "", "docs/conf.py": "", "zope/event/classhandler.py": ""}
    egg = egg_of(tmp_path, "zope.event-6.2-py3.11.egg", files, {"top_level.txt": "zope\n"})
    scan = check.scan_installed(*installed_egg(egg, tmp_path / "site"))
    assert scan["modules"] == ["zope.event", "zope.event.classhandler"]
    assert sorted(scan["unplaced"]) == ["docs.conf"]


def test_a_pkg_resources_egg_and_its_wheel_with_nspkg_pth_find_the_same_modules(tmp_path: Path) -> None:
    code = {"zope/interface/__init__.py": "", "zope/interface/_zope_interface_coptimizations.so": b"\x7fELF",
            "zope/interface/interface.py": ""}
    meta = {"top_level.txt": "zope\n", "namespace_packages.txt": "zope\n", "requires.txt": "setuptools\n\n[test]\nzope.testing\n"}
    # bdist_egg keeps the namespace's __init__.py (declare_namespace); bdist_wheel leaves it out
    # and writes a -nspkg.pth that makes `zope` when the interpreter starts.
    egg = egg_of(tmp_path, "zope.interface-5.5.2-py2.7-linux-x86_64.egg",
                 code | {"zope/__init__.py": "__import__('pkg_resources').declare_namespace(__name__)\n"}, meta)
    wheel = wheel_of(tmp_path, "zope.interface-5.5.2-cp27-cp27mu-linux_x86_64.whl",
                     code | {"zope.interface-5.5.2-py2.7-nspkg.pth": NSPKG},
                     {"top_level.txt": "zope\n", "namespace_packages.txt": "zope\n",
                      "METADATA": "Name: zope.interface\nRequires-Dist: setuptools\nRequires-Dist: zope.testing ; extra == 'test'\n"})
    egg_scan = check.scan_installed(*installed_egg(egg, tmp_path / "egg-site"))
    wheel_scan = check.scan_installed(*installed_wheel(wheel, tmp_path / "wheel-site"))
    assert egg_scan["declared"] == wheel_scan["declared"] == ["zope"]
    assert egg_scan["namespaces"] == wheel_scan["namespaces"] == ["zope"]
    assert egg_scan["modules"] == ["zope", "zope.interface", "zope.interface._zope_interface_coptimizations",
                                   "zope.interface.interface"]
    assert wheel_scan["modules"] == egg_scan["modules"][1:]  # the wheel has no zope/__init__.py to import
    assert egg_scan["compiled"] == wheel_scan["compiled"] == {
        "zope.interface._zope_interface_coptimizations": ["zope/interface/_zope_interface_coptimizations.so"]}
    # Run-time requirements, the [test] extra left out.
    assert egg_scan["requirements"] == wheel_scan["requirements"] == {"setuptools"}


def test_nspkg_pth_lines_name_their_namespaces() -> None:
    assert check.nspkg_namespaces(NSPKG + NESTED.replace("google', 'cloud", "google")) == ["zope", "google"]
    assert check.nspkg_namespaces(NESTED) == ["google.cloud"]
    assert check.nspkg_namespaces("import os\n") == []


def test_a_declared_nested_namespace_and_a_pkgutil_one() -> None:
    files = ["google/cloud/storage/__init__.py", "google/cloud/storage/blob.py",
             # pkgutil-style: the namespace's __init__.py extends __path__; it is a regular package file
             "backports/__init__.py", "backports/ssl_match_hostname/__init__.py"]
    scan = check.scan_modules(files, top_level=["backports", "google"], namespaces=["google.cloud"])
    assert scan["modules"] == ["backports", "backports.ssl_match_hostname", "google.cloud.storage",
                               "google.cloud.storage.blob"]
    assert scan["namespaces"] == ["google", "google.cloud"]


def test_the_old_rules_still_hold() -> None:
    files = ["pkg/__init__.py", "pkg/__main__.py", "pkg/data/fixture.py", "pkg/data/sub/x.py", "pkg/mod.py"]
    assert check.enumerate_modules(files) == (["pkg", "pkg.mod"], {})
    scan = check.scan_modules(files)
    assert scan["skipped"] == ["pkg.__main__"] and sorted(scan["unplaced"]) == ["pkg.data.fixture", "pkg.data.sub.x"]


# --- test packages -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("module", "error", "apart"),
    [
        ("zope.interface.tests.test_ro", "ModuleNotFoundError: No module named 'zope.testing'", "zope.testing"),
        ("zope.interface.tests.test_ro", "ImportError: No module named testing", "testing"),  # Python 2
        ("greenlet.tests", "ModuleNotFoundError: No module named 'objgraph'", "objgraph"),
        ("numpy.core.tests.test_x", "ImportError: No module named hypothesis", "hypothesis"),
        # the package's own module missing, or a run-time requirement: failures
        ("greenlet.tests", "ModuleNotFoundError: No module named 'greenlet._greenlet'", None),
        ("zope.interface.tests.test_x", "ImportError: No module named _zope_interface_coptimizations", None),
        ("zope.interface.tests.test_x", "ModuleNotFoundError: No module named 'six'", None),
        ("zope.interface.tests.test_x", "ModuleNotFoundError: No module named 'zope.event'", None),
        # anything else than a missing module, and any failure outside a test package: failures
        ("greenlet.tests", "ImportError: cannot import name 'x' from 'objgraph'", None),
        ("greenlet.tests", "the interpreter died while importing it (killed by SIGSEGV)", None),
        ("greenlet", "ModuleNotFoundError: No module named 'objgraph'", None),
        ("greenlet.testing", "ModuleNotFoundError: No module named 'objgraph'", None),
    ],
)
def test_a_test_only_requirement_is_said_apart_and_nothing_else(module: str, error: str, apart: str | None) -> None:
    own = {"greenlet", "greenlet._greenlet", "greenlet.tests", "zope.interface",
           "zope.interface._zope_interface_coptimizations", "zope.interface.tests", "numpy", "numpy.core"}
    assert check.test_only_missing(module, error, own, {"six", "zope-event"}) == apart


# --- the whole test step, on the host's Python ----------------------------------------------------

def test_the_check_of_a_pep420_egg_imports_its_modules_and_proves_the_extension(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """check.py's own check() on a PEP 420 egg whose compiled module is real: before, it found 0
    modules, imported nothing and called the package a pure-Python fallback while ldd listed
    the compiled module."""
    files = ZOPE8 | {f"zope/interface/_csv{EXT_SUFFIX}": CSV_SO.read_bytes()}
    egg = egg_of(tmp_path / "in", "zope.interface-8.7-py3.11-linux-x86_64.egg", files, {"top_level.txt": "zope\n"})
    work = tmp_path / "work"
    spec = {"artifact": str(egg), "format": "egg", "deps": [], "out": str(tmp_path / "out"), "work": str(work),
            "extensions": None, "skip_imports": [], "family": "debian", "build_only": []}
    result = {"reasons": [], "timings": {}, "modules": [], "namespaces": [], "import_failures": {},
              "test_imports_apart": {}, "extensions": {}}
    lines: list[str] = []
    monkeypatch.setattr(check, "say", lambda text: lines.append(str(text)))
    check.check(spec, result, check.Envs(spec, str(work), keep=False))
    text = "\n".join(lines)
    assert "pure-Python fallback" not in text and "0 modules" not in text, text
    assert result["namespaces"] == ["zope"]
    assert "zope.interface._csv" in result["modules"] and "zope.interface.tests.test_ro" in result["modules"]
    assert result["extensions"] == {"zope.interface._csv": "extension"}
    # zope.testing is a test-only requirement: said apart. The package's own module missing is not.
    assert list(result["test_imports_apart"]) == ["zope.interface.tests.test_ro"]
    assert "zope.testing" in result["test_imports_apart"]["zope.interface.tests.test_ro"]
    assert list(result["import_failures"]) == ["zope.interface.tests.test_broken"]
    reasons = [r for r in result["reasons"] if not r.startswith("runtime image has a compiler")]  # the host has gcc
    assert reasons == ["import zope.interface.tests.test_broken failed: ModuleNotFoundError: No module named "
                       "'zope.interface.no_such_module'"]
    assert "9 modules (4 in test packages), compiled: zope.interface._csv; in namespace packages zope" in text
    assert f"ldd zope/interface/_csv{EXT_SUFFIX}" in text


def run_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, egg: Path, extensions: list[str] | None) -> tuple[dict, str]:
    work = tmp_path / "work"
    spec = {"artifact": str(egg), "format": "egg", "deps": [], "out": str(tmp_path / "out"), "work": str(work),
            "extensions": extensions, "skip_imports": [], "family": "debian", "build_only": []}
    result = {"reasons": [], "timings": {}, "modules": [], "namespaces": [], "import_failures": {},
              "test_imports_apart": {}, "extensions": {}}
    lines: list[str] = []
    monkeypatch.setattr(check, "say", lambda text: lines.append(str(text)))
    check.check(spec, result, check.Envs(spec, str(work), keep=False))
    result["reasons"] = [r for r in result["reasons"] if not r.startswith("runtime image has a compiler")]
    return result, "\n".join(lines)


def test_an_artifact_with_files_but_no_module_found_fails_as_the_scans_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    egg = egg_of(tmp_path / "in", "odd-1.0-py3.11-linux-x86_64.egg",
                 {"odd-dir/thing.py": "", f"odd-dir/_csv{EXT_SUFFIX}": CSV_SO.read_bytes()}, {"top_level.txt": "odd\n"})
    result, text = run_check(tmp_path, monkeypatch, egg, None)
    assert len(result["reasons"]) == 1, result["reasons"]
    assert result["reasons"][0].startswith("the module scan found no module among the 2 files "
                                           "odd-1.0-py3.11-linux-x86_64.egg installs")
    assert "an error of builder's scan" in result["reasons"][0]
    assert "pure-Python fallback" not in text and f"ldd odd-dir/_csv{EXT_SUFFIX}" in text


def test_a_scan_that_finds_nothing_in_an_artifact_with_files_is_the_scans_error() -> None:
    status: dict[str, str] = {}
    reasons: list[str] = []
    so = f"weird-dir/_x{EXT_SUFFIX}"
    unplaced = {"weird-dir._x": [so]}
    check.judge_extensions(None, {}, {}, "x-1.0-py3.11-linux-x86_64.egg", status, reasons, unplaced)
    assert len(reasons) == 1 and "an error of builder's scan, not a pure-Python fallback" in reasons[0]
    reasons.clear()
    check.judge_extensions(["pkg._x"], {}, {}, "x.egg", status, reasons, {"pkg._x": ["pkg/_x.so"]})
    assert "placed it in no importable package" in reasons[0] and "fell back" not in reasons[0]
    reasons.clear()
    check.judge_extensions(None, {}, {}, "x.egg", status, reasons, {}, scan_failed=True)
    assert reasons == []


# --- check-imports: which distribution of a namespace provides an import ----------------------------

def test_each_distribution_of_a_namespace_provides_its_own_modules(matrix, tmp_path: Path) -> None:  # noqa: F811
    out, built = matrix.settings.output, tmp_path / "built"
    interface = egg_of(built, "zope.interface-5.5.2-py2.7-linux-x86_64.egg",
                       {"zope/__init__.py": "", "zope/interface/__init__.py": "", "zope/interface/_c.so": ""},
                       {"top_level.txt": "zope\n", "namespace_packages.txt": "zope\n", "PKG-INFO": ""})
    event = wheel_of(built, "zope.event-4.6-py2.py3-none-any.whl",
                     {"zope.event-4.6-py2.7-nspkg.pth": NSPKG, "zope/event/__init__.py": "",
                      "zope/event/classhandler.py": ""},
                     {"top_level.txt": "zope\n", "namespace_packages.txt": "zope\n", "METADATA": "Name: zope.event\n"})
    event_egg = egg_of(built, "zope.event-4.6-py2.7.egg", {"zope/event/__init__.py": ""},  # PEP 420 style
                       {"top_level.txt": "zope\n", "PKG-INFO": ""})
    put(out, "debian11-py27", "zope.interface", "5.5.2", interface)
    put(out, "debian11-py27", "zope.event", "4.6", event, event_egg)
    artifacts = {a.filename: a for a in published.load(matrix, "debian11-py27")}
    assert artifacts[interface.name].provides == ("zope.interface",)
    assert artifacts[interface.name].namespaces == ("zope",)
    assert artifacts[event.name].provides == ("zope.event",) and artifacts[event.name].namespaces == ("zope",)
    assert artifacts[event_egg.name].provides == ("zope.event",) and artifacts[event_egg.name].namespaces == ("zope",)
    assert artifacts["six-1.16.0-py2.7-linux-x86_64.egg"].provides == ("six",)

    found = list(artifacts.values())
    assert [a.filename for a in published.providers_of("zope.interface.declarations", found)] == [interface.name]
    assert sorted(a.filename for a in published.providers_of("zope.event", found)) == [event_egg.name, event.name]
    assert sorted(a.package for a in published.providers_of("zope", found)) == ["zope.event", "zope.event",
                                                                                 "zope.interface"]
    assert published.providers_of("zope.component", found) == []

    chosen = [artifacts[interface.name], artifacts[event_egg.name], artifacts["six-1.16.0-py2.7-linux-x86_64.egg"]]
    entry = {"file": "app.py", "name": None, "optional": False}
    scan = {"python": "2.7.18", "files": 1, "own": [], "problems": [], "optional": [],
            "imports": [dict(entry, line=1, statement="from zope.interface import nope", module="zope.interface",
                             spec="zope.interface:nope"),
                        dict(entry, line=2, statement="from zope.event import nope", module="zope.event",
                             spec="zope.event:nope"),
                        dict(entry, line=3, statement="import zope.component", module="zope.component",
                             spec="zope.component"),
                        dict(entry, line=4, statement="import zope", module="zope", spec="zope")]}
    failed = {"ok": False, "error_type": "ImportError", "error": "nope"}
    tried = {e["spec"]: failed for e in scan["imports"]}
    report = imports._report(Path("/src/app"), "debian11-py27", scan, tried, found, chosen, False, "egg")
    assert [(f.where, f.provider) for f in report.failures] == [
        ("app.py:1", "zope.interface 5.5.2 (zope.interface-5.5.2-py2.7-linux-x86_64.egg)"),
        ("app.py:2", "zope.event 4.6 (zope.event-4.6-py2.7.egg)"),
        ("app.py:3", "no published artifact provides it (zope is a namespace package shared by zope.event, "
                     "zope.interface)"),
        ("app.py:4", "zope.event 4.6 (zope.event-4.6-py2.7.egg), zope.interface 5.5.2 "
                     "(zope.interface-5.5.2-py2.7-linux-x86_64.egg)"),
    ]


# --- check-imports' scan: an application with its own portion of a shared namespace -----------------

@pytest.mark.parametrize("style", ["pep420", "pkg_resources", "pkgutil"])
def test_an_application_sharing_a_namespace_owns_only_its_own_portion(tmp_path: Path, style: str) -> None:
    from builder.guest import imports as scanner

    app = tmp_path / "app"
    (app / "zope" / "myapp").mkdir(parents=True)
    if style == "pkg_resources":
        (app / "zope" / "__init__.py").write_text("__import__('pkg_resources').declare_namespace(__name__)\n")
    elif style == "pkgutil":
        (app / "zope" / "__init__.py").write_text(
            "from pkgutil import extend_path\n__path__ = extend_path(__path__, __name__)\n")
    (app / "zope" / "myapp" / "__init__.py").write_text("")
    (app / "zope" / "myapp" / "views.py").write_text(
        "import zope.interface\nfrom zope.event import notify\nfrom zope.myapp import models\nimport zope.myapp.gone\n")
    (app / "zope" / "myapp" / "models.py").write_text("")
    found = scanner.scan(str(app))
    stdlib = ["pkgutil:extend_path"] if style == "pkgutil" else []
    assert sorted(e["spec"] for e in found["imports"]) == [*stdlib, "zope.event:notify", "zope.interface"]
    assert sorted(e["spec"] for e in found["own"]) == ["zope.myapp.gone", "zope.myapp:models"]
    assert [p["error"] for p in found["problems"]] == [
        "ImportError: import zope.myapp.gone: the application has no module zope.myapp.gone"]


def test_a_compiled_module_in_a_test_package_set_apart_is_never_silently_proven() -> None:
    compiled = {"pkg.tests._helper": ["pkg/tests/_helper.so"]}
    failed = {"pkg.tests._helper": {"ok": False, "error": "ModuleNotFoundError: No module named 'hypothesis'"}}
    apart = {"pkg.tests._helper": failed["pkg.tests._helper"]["error"]}
    status: dict[str, str] = {}
    reasons: list[str] = []
    check.judge_extensions(None, compiled, failed, "pkg.egg", status, reasons, apart=apart)
    assert status == {"pkg.tests._helper": "test-only-requirement-missing"}
    assert len(reasons) == 1 and reasons[0].startswith("no compiled module of pkg.egg could be imported")
    reasons.clear()
    check.judge_extensions(["pkg.tests._helper"], compiled, failed, "pkg.egg", status, reasons, apart=apart)
    assert reasons == ["pkg.tests._helper is a named extension but could not be imported: ModuleNotFoundError: "
                       "No module named 'hypothesis'"]
    reasons.clear()
    both = dict(compiled, **{"pkg._speedups": ["pkg/_speedups.so"]})
    check.judge_extensions(None, both, dict(failed, **{"pkg._speedups": {"ok": True, "extension": True}}),
                           "pkg.egg", status, reasons, apart=apart)
    assert reasons == [] and status["pkg._speedups"] == "extension"


def test_deploy_resolves_each_distribution_of_a_namespace(matrix, tmp_path: Path) -> None:  # noqa: F811
    """deploy's resolver (published.resolve) goes by distribution names: two distributions of
    the one zope namespace are both chosen, each with its own artifact."""
    from packaging.requirements import Requirement

    from builder.deploy.resolve import install_order

    out, built = matrix.settings.output, tmp_path / "built"
    put(out, "debian11-py27", "zope.interface", "5.5.2",
        egg_of(built, "zope.interface-5.5.2-py2.7-linux-x86_64.egg", {"zope/interface/__init__.py": ""},
               {"top_level.txt": "zope\n", "requires.txt": "zope.event\n"}))
    put(out, "debian11-py27", "zope.event", "4.6",
        egg_of(built, "zope.event-4.6-py2.7.egg", {"zope/event/__init__.py": ""}, {"top_level.txt": "zope\n"}))
    artifacts = published.load(matrix, "debian11-py27")
    chosen = published.resolve(matrix, "debian11-py27", artifacts, [("deploy", Requirement("zope.interface"))],
                               "egg", "2.7.18")
    assert [a.filename for a in install_order(chosen)] == ["zope.event-4.6-py2.7.egg",
                                                           "zope.interface-5.5.2-py2.7-linux-x86_64.egg"]

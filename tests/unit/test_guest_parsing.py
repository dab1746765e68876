"""The in-guest scripts' pure helpers, run on the host: ldd parsing, file-to-module mapping,
safe unpacking, build commands, and the importing child (a real venv, a real segfault)."""
from __future__ import annotations

import ast
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from builder.guest import build, check

# The guest scripts import their helpers as the top-level module `_common` (that is how they run
# in a guest), so take its names from there: builder.guest._common would be a second copy.
GuestError, fresh_dir, unpack = check.GuestError, check.fresh_dir, check.unpack
common = sys.modules["_common"]

GUEST = Path(build.__file__).parent
GUEST_FILES = sorted(GUEST.glob("*.py"))

# Real ldd output from the runtime images (Debian 11: an extension built on Debian 12 that calls
# stat(); Debian 12 without libyaml-0-2), and FreeBSD's format.
LDD_GLIBC = """\
/tmp/env/site-packages/x.egg/markupsafe/_statprobe.so: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.33' not found (required by /tmp/env/site-packages/x.egg/markupsafe/_statprobe.so)
\tlinux-vdso.so.1 (0x00007fdaac41d000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007fdaac23a000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007fdaac41f000)
"""
LDD_NO_LIBYAML = """\
\tlinux-vdso.so.1 (0x00007ffd5c9f2000)
\tlibyaml-0.so.2 => not found
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0c2c1e0000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f0c2c3d1000)
"""
LDD_FREEBSD = """\
/tmp/x/_yaml.so:
\tlibyaml-0.so.2 => not found (0)
\tlibthr.so.3 => /lib/libthr.so.3 (0x800a4b000)
\tlibc.so.7 => /lib/libc.so.7 (0x800c7c000)
"""


# --- ldd ---------------------------------------------------------------------------------------

def test_ldd_missing_symbol_version_is_found_although_the_library_resolves() -> None:
    assert check.parse_ldd(LDD_GLIBC) == ([], ["GLIBC_2.33 (libc.so.6)"])


def test_ldd_missing_library() -> None:
    assert check.parse_ldd(LDD_NO_LIBYAML) == (["libyaml-0.so.2"], [])
    assert check.parse_ldd(LDD_FREEBSD) == (["libyaml-0.so.2"], [])


def test_ldd_newer_glibc_quotes_and_duplicates() -> None:
    text = (
        "./a.so: /lib/libc.so.6: version 'GLIBC_2.38' not found (required by ./a.so)\n"
        "./a.so: /lib/libc.so.6: version 'GLIBC_2.38' not found (required by ./b.so)\n"
        "\tlibfoo.so.1 => not found\n\tlibfoo.so.1 => not found\n"
    )
    assert check.parse_ldd(text) == (["libfoo.so.1"], ["GLIBC_2.38 (libc.so.6)"])


def test_ldd_clean_output() -> None:
    assert check.parse_ldd("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n\tstatically linked\n") == ([], [])


def test_shared_objects() -> None:
    assert check.is_shared_object("yaml/_yaml.cpython-311-x86_64-linux-gnu.so")
    assert check.is_shared_object("pkg.libs/libpq-abc.so.5.16")
    assert not check.is_shared_object("yaml/_yaml.pyx")


# --- modules -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("yaml/__init__.py", ("yaml", "source")),
        ("yaml/_yaml.so", ("yaml._yaml", "compiled")),
        ("yaml/_yaml.cpython-311-x86_64-linux-gnu.so", ("yaml._yaml", "compiled")),
        ("simplejson/_speedups.abi3.so", ("simplejson._speedups", "compiled")),
        ("six.py", ("six", "source")),
        ("six.pyc", ("six", "bytecode")),
        ("yaml/__pycache__/error.cpython-311.pyc", None),
        ("EGG-INFO/PKG-INFO", None),
        ("EGG-INFO/scripts/run.py", None),
        ("PyYAML-5.4.1.dist-info/RECORD", None),
        ("pkg-1.0.data/scripts/tool.py", None),
        ("dateutil/zoneinfo/dateutil-zoneinfo.tar.gz", None),
        ("my-scripts/run.py", None),
    ],
)
def test_module_for(path: str, expected: tuple[str, str] | None) -> None:
    assert check.module_for(path) == expected


# What unzipping PyYAML 5.4.1's Python 3 egg gives (the .py stub beside the .so included).
PYYAML_EGG = [
    "EGG-INFO/PKG-INFO", "EGG-INFO/native_libs.txt", "EGG-INFO/top_level.txt",
    "_yaml/__init__.py", "_yaml/__pycache__/__init__.cpython-311.pyc",
    "yaml/__init__.py", "yaml/__pycache__/__init__.cpython-311.pyc",
    "yaml/_yaml.cpython-311-x86_64-linux-gnu.so", "yaml/_yaml.py", "yaml/composer.py", "yaml/cyaml.py",
]


def test_egg_stub_and_extension_are_one_compiled_module() -> None:
    modules, compiled = check.enumerate_modules(PYYAML_EGG)
    assert modules == ["_yaml", "yaml", "yaml._yaml", "yaml.composer", "yaml.cyaml"]
    assert compiled == {"yaml._yaml": ["yaml/_yaml.cpython-311-x86_64-linux-gnu.so"]}


def test_python2_egg_with_bytecode() -> None:
    files = ["markupsafe/__init__.py", "markupsafe/__init__.pyc", "markupsafe/_speedups.so",
             "markupsafe/_speedups.py", "markupsafe/_speedups.pyc", "EGG-INFO/SOURCES.txt"]
    assert check.enumerate_modules(files) == (
        ["markupsafe", "markupsafe._speedups"], {"markupsafe._speedups": ["markupsafe/_speedups.so"]})


def test_skips_cover_submodules_and_required_extensions_are_kept() -> None:
    files = ["dateutil/__init__.py", "dateutil/tz/__init__.py", "dateutil/tz/win.py", "dateutil/tz/tz.py",
             "dateutil/tzwin.py", "dateutil/tz/_win/__init__.py", "dateutil/tz/_win/_fast.so"]
    modules, compiled = check.enumerate_modules(files, ["dateutil.tz.win", "dateutil.tzwin", "dateutil.tz._win"])
    assert modules == ["dateutil", "dateutil.tz", "dateutil.tz.tz"]
    assert compiled == {}
    modules, compiled = check.enumerate_modules(files, ["dateutil.tz._win"], keep=["dateutil.tz._win._fast"])
    assert "dateutil.tz._win._fast" in modules and "dateutil.tz._win" not in modules
    assert compiled == {"dateutil.tz._win._fast": ["dateutil/tz/_win/_fast.so"]}


def test_folders_that_are_not_packages_and_main_modules_are_left_alone() -> None:
    files = ["pkg/__init__.py", "pkg/__main__.py", "pkg/data/fixture.py", "pkg/data/sub/x.py", "pkg/mod.py"]
    assert check.enumerate_modules(files) == (["pkg", "pkg.mod"], {})


def test_skipped_matches_whole_names_only() -> None:
    assert check.skipped("simplejson.ordered_dict", ["simplejson.ordered_dict"])
    assert check.skipped("a.b.c", ["a.b"])
    assert not check.skipped("a.bc", ["a.b"])


def test_record_paths() -> None:
    record = (
        "yaml/__init__.py,sha256=abc,1234\n"
        '"yaml/odd,name.py",sha256=def,1\n'
        "../../../bin/tool,sha256=x,2\n"
        "PyYAML-5.4.1.dist-info/RECORD,,\n"
        "\n"
    )
    assert check.record_paths(record) == ["yaml/__init__.py", "yaml/odd,name.py", "PyYAML-5.4.1.dist-info/RECORD"]


def test_python_tag_mismatch() -> None:
    assert check.python_tag_mismatch("/x/PyYAML-5.4.1-py2.7-linux-x86_64.egg", (2, 7, 18)) is None
    assert "is for Python 2.7, but the runtime Python is 3.11" in check.python_tag_mismatch(
        "/x/PyYAML-5.4.1-py2.7-linux-x86_64.egg", (3, 11, 2))
    assert check.python_tag_mismatch("/x/six-1.16.0-py2.py3-none-any.whl", (3, 11, 2)) is None


def judged(wanted, compiled, imports):
    status: dict[str, str] = {}
    reasons: list[str] = []
    check.judge_extensions(wanted, compiled, imports, "PyYAML-5.4.1-py2.7-linux-x86_64.egg", status, reasons)
    return status, reasons


def test_named_extension_missing_means_a_pure_python_fallback() -> None:
    status, reasons = judged(["yaml._yaml"], {}, {})
    assert status == {"yaml._yaml": "not-extension"}
    assert reasons == ["yaml._yaml was not built as an extension (the package fell back to pure Python: "
                       "check its build-time requirements)"]


def test_no_extensions_named_needs_at_least_one() -> None:
    status, reasons = judged(None, {}, {})
    assert reasons[0].startswith("no compiled module in PyYAML-5.4.1-py2.7-linux-x86_64.egg:")
    assert judged([], {}, {}) == ({}, [])


def test_compiled_module_loaded_some_other_way_or_not_at_all() -> None:
    compiled = {"yaml._yaml": ["yaml/_yaml.so"]}
    loaded = {"yaml._yaml": {"ok": True, "extension": False, "file": "/egg/yaml/_yaml.py"}}
    status, reasons = judged(None, compiled, loaded)
    assert status == {"yaml._yaml": "not-extension"} and "did not load it as an extension" in reasons[0]
    status, reasons = judged(["yaml._yaml"], compiled, {"yaml._yaml": {"ok": False, "error": "ImportError: x"}})
    assert status == {"yaml._yaml": "import-failed"} and reasons == []
    assert judged(["yaml._yaml"], compiled, {"yaml._yaml": {"ok": True, "extension": True}}) == (
        {"yaml._yaml": "extension"}, [])


# --- compilers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cc", "gcc", "gcc-12", "x86_64-linux-gnu-gcc-12", "c++", "g++", "clang",
                                  "clang-15", "tcc", "c99-gcc"])
def test_compiler_names(name: str) -> None:
    assert check.is_compiler(name)


@pytest.mark.parametrize("name", ["c++filt", "gcc-ar", "gcc-nm-12", "ccache-swig", "python3", "ldd", "occ"])
def test_not_compiler_names(name: str) -> None:
    assert not check.is_compiler(name)


def test_find_compilers_names_each_real_file_once(tmp_path: Path) -> None:
    usr = tmp_path / "usr" / "bin"
    usr.mkdir(parents=True)
    real = usr / "x86_64-linux-gnu-gcc-12"
    real.write_text("#!/bin/sh\n")
    real.chmod(0o755)
    for alias in ("gcc-12", "gcc", "cc"):
        (usr / alias).symlink_to(real.name)
    (usr / "c++filt").write_text("")
    (usr / "c++filt").chmod(0o755)
    (tmp_path / "bin").symlink_to(usr)  # merged /usr
    found = check.find_compilers(str(usr) + os.pathsep + str(tmp_path / "bin"), extra_dirs=())
    assert found == [str(usr / "gcc")]
    assert check.find_compilers(str(tmp_path / "nowhere"), extra_dirs=()) == []


# --- unpacking ---------------------------------------------------------------------------------

def make_tar(path: Path, members: list[tuple[str, str, str]]) -> Path:
    """members: (name, type, data or link target); type is file, dir, sym, hard, chr."""
    with tarfile.open(path, "w:gz") as tf:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                data = payload.encode()
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                         "chr": tarfile.CHRTYPE}[kind]
            info.linkname = payload
            tf.addfile(info)
    return path


def test_good_sdist_unpacks_to_one_folder_with_setup_py(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "pkg-1.0.tar.gz", [
        ("pkg-1.0", "dir", ""), ("pkg-1.0/setup.py", "file", "print(1)"), ("pkg-1.0/pkg/__init__.py", "file", ""),
        ("pkg-1.0/link.py", "sym", "pkg/__init__.py"), ("pkg-1.0/hard.py", "hard", "pkg-1.0/setup.py"),
    ])
    dest = tmp_path / "out"
    dest.mkdir()
    unpack(str(archive), str(dest))
    root = build.find_source_root(str(dest), archive.name)
    assert Path(root, "setup.py").read_text() == "print(1)"
    assert Path(root, "hard.py").read_text() == "print(1)"
    assert os.readlink(Path(root, "link.py")) == "pkg/__init__.py"


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([("/etc/evil", "file", "x")], "absolute path"),
        ([("pkg/../../evil", "file", "x")], "'..' in its path"),
        ([("pkg/etc", "sym", "/etc")], "absolute target"),
        ([("pkg/up", "sym", "../../x")], "points outside"),
        ([("pkg/up", "hard", "../x")], "points outside"),
        ([("pkg/tty", "chr", "")], "special file"),
        # each link looks harmless alone; together l2 resolves above the folder
        ([("pkg/d/l", "sym", ".."), ("pkg/d/l2", "sym", "l/../..")], "outside"),
        ([("pkg/d/l", "sym", ".."), ("pkg/d/l2", "sym", "l/../.."), ("pkg/d/l2/evil", "file", "x")], "outside"),
    ],
)
def test_unsafe_tar_members_are_refused(tmp_path: Path, members: list, message: str) -> None:
    archive = make_tar(tmp_path / "evil-1.0.tar.gz", members)
    dest = tmp_path / "a" / "out"
    dest.mkdir(parents=True)
    with pytest.raises(GuestError, match="refusing evil-1.0.tar.gz: .*" + message):
        unpack(str(archive), str(dest))
    assert not (tmp_path / "a" / "evil").exists() and not (tmp_path / "evil").exists()


def test_size_limit(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "big-1.0.tar.gz", [("big/setup.py", "file", "x" * 2000)])
    with pytest.raises(GuestError, match="unpacks to at least 2000 bytes, over the limit of 1000 .at member 'big/setup.py'"):
        unpack(str(archive), str(tmp_path), limit=1000)


def test_truncated_and_corrupt_archives(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "t-1.0.tar.gz", [("t/setup.py", "file", os.urandom(50000).hex())])
    cut = tmp_path / "cut-1.0.tar.gz"
    cut.write_bytes(archive.read_bytes()[:20000])
    with pytest.raises(GuestError, match="cut-1.0.tar.gz is corrupt or truncated"):
        unpack(str(cut), str(fresh_dir(str(tmp_path / "o1"))))
    junk = tmp_path / "junk-1.0.zip"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(GuestError, match="junk-1.0.zip is corrupt or truncated"):
        unpack(str(junk), str(fresh_dir(str(tmp_path / "o2"))))
    with pytest.raises(GuestError, match="unknown archive type"):
        unpack(str(tmp_path / "x.rar"), str(tmp_path))


def test_zip_members(tmp_path: Path) -> None:
    good = tmp_path / "z-1.0.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("z-1.0/setup.py", "x")
        script = zipfile.ZipInfo("z-1.0/configure")
        script.external_attr = 0o100755 << 16
        zf.writestr(script, "#!/bin/sh\n")
    dest = fresh_dir(str(tmp_path / "o"))
    unpack(str(good), dest)
    assert os.access(os.path.join(dest, "z-1.0", "configure"), os.X_OK)
    bad = tmp_path / "bad-1.0.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("bad/../../x", "x")
    with pytest.raises(GuestError, match="'..' in its path"):
        unpack(str(bad), fresh_dir(str(tmp_path / "o3")))


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (["a/setup.py", "b/setup.py"], "exactly one top-level folder; it holds: a, b"),
        (["a/setup.py", "README"], "exactly one top-level folder; it holds: README, a"),
        (["a/README"], "a has neither a setup.py nor a pyproject.toml"),  # a pyproject.toml alone is built (PEP 517)
    ],
)
def test_source_root_errors(tmp_path: Path, entries: list[str], message: str) -> None:
    for entry in entries:
        Path(tmp_path, entry).parent.mkdir(parents=True, exist_ok=True)
        Path(tmp_path, entry).write_text("")
    with pytest.raises(GuestError, match=message):
        build.find_source_root(str(tmp_path), "x-1.0.tar.gz")


# --- build commands ----------------------------------------------------------------------------

def test_egg_goes_through_the_setuptools_shim(tmp_path: Path) -> None:
    argv = build.build_command("egg", "py", str(tmp_path), "/d", ["--with-libyaml"], use_pip=True)
    assert argv == ["py", "-c", build.SHIM, "--with-libyaml", "bdist_egg", "--dist-dir", "/d"]


def test_wheel_through_pip_with_global_options_for_a_legacy_project(tmp_path: Path) -> None:
    argv = build.build_command("wheel", "py", str(tmp_path), "/d", ["--quiet"], use_pip=True)
    assert argv[:4] == ["py", "-m", "pip", "wheel"]
    assert "--no-build-isolation" in argv and "--no-index" in argv and "--no-deps" in argv
    assert argv[-2:] == ["--global-option=--quiet", str(tmp_path)]


def test_wheel_with_setup_args_and_pyproject_bypasses_pip(tmp_path: Path) -> None:
    # pip 23.0.1 ignores --global-option for PEP 517 builds (seen with PyYAML 5.4.1).
    (tmp_path / "pyproject.toml").write_text("[build-system]\n")
    argv = build.build_command("wheel", "py", str(tmp_path), "/d", ["--with-libyaml"], use_pip=True)
    assert argv == ["py", "-c", build.SHIM, "--with-libyaml", "bdist_wheel", "--dist-dir", "/d"]
    assert build.build_command("wheel", "py", str(tmp_path), "/d", [], use_pip=True)[1:3] == ["-m", "pip"]


def test_wheel_without_pip_uses_bdist_wheel(tmp_path: Path) -> None:
    argv = build.build_command("wheel", "py", str(tmp_path), "/d", [], use_pip=False)
    assert argv == ["py", "-c", build.SHIM, "bdist_wheel", "--dist-dir", "/d"]


def test_shim_runs_setup_py_as_main_with_its_arguments(tmp_path: Path) -> None:
    (tmp_path / "setup.py").write_text(
        "import sys, setuptools\n"
        "assert __name__ == '__main__' and __file__ == 'setup.py'\n"
        "print('ARGS', sys.argv)\n"
    )
    out = subprocess.run([sys.executable, "-c", build.SHIM, "--with-x", "bdist_egg"], cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout
    assert "ARGS ['setup.py', '--with-x', 'bdist_egg']" in out


def test_pick_error_prefers_the_cause() -> None:
    gcc = ["x86_64-linux-gnu-gcc -Werror=format-security -c yaml/_yaml.c",
           "x86_64-linux-gnu-gcc: error: yaml/_yaml.c: No such file or directory",
           "error: command 'x86_64-linux-gnu-gcc' failed with exit status 1"]
    assert build.pick_error(gcc) == "x86_64-linux-gnu-gcc: error: yaml/_yaml.c: No such file or directory"
    scm = ["ERROR: Could not find a version that satisfies the requirement setuptools_scm (from versions: none)",
           "    raise CalledProcessError(retcode, cmd)",
           "subprocess.CalledProcessError: Command '['python3', '-m', 'pip']' returned non-zero exit status 1."]
    assert "requirement setuptools_scm" in build.pick_error(scm)
    assert build.pick_error(["error: command 'gcc' failed"]) == "error: command 'gcc' failed"
    assert build.pick_error(["ImportError: No module named Cython.Distutils", ""]) == \
        "ImportError: No module named Cython.Distutils"
    assert build.pick_error(["all went", "wrong"]) == "wrong"


def test_artifact_versions() -> None:
    assert build.artifact_version("python_dateutil-0.0.0-py2.py3-none-any.whl") == "0.0.0"
    assert build.artifact_version("PyYAML-5.4.1-py2.7-linux-x86_64.egg") == "5.4.1"
    assert build.same_version("2.9.0.post0", "2.9.0.post0")
    assert build.same_version("1.0rc1", "1.0.rc1")
    assert not build.same_version("0.0.0", "2.9.0.post0")


# --- the importing child, in a real venv -------------------------------------------------------

@pytest.fixture
def venv(tmp_path: Path) -> tuple[check.Env, str]:
    work = str(tmp_path)
    for sub in ("empty", "home", "egg-cache"):
        os.makedirs(os.path.join(work, sub))
    env = check.make_env({}, work)
    env.site = check.site_dirs(env, work)[0]
    return env, work


def test_import_child_reports_errors_crashes_and_loaders(venv: tuple[check.Env, str]) -> None:
    env, work = venv
    pkg = Path(env.site, "pkg")
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "good.py").write_text("VALUE = 1\n")
    (pkg / "broken.py").write_text("raise RuntimeError('caf\\xe9 needs a display')\n")
    (pkg / "crash.py").write_text("import ctypes\nctypes.string_at(0)\n")
    (pkg / "quits.py").write_text("import os\nos._exit(0)\n")
    (pkg / "zz_after.py").write_text("print('imported after the crash')\n")
    modules = ["_csv", "json", "pkg", "pkg.broken", "pkg.crash", "pkg.good", "pkg.quits", "pkg.zz_after"]
    results = check.import_all(env, modules, {"_csv": [], "json": []}, work)
    assert results["_csv"]["ok"] and results["_csv"]["extension"] is True
    assert results["json"]["ok"] and results["json"]["extension"] is False
    assert results["pkg.broken"] == {"name": "pkg.broken", "ok": False, "error": "RuntimeError: caf\xe9 needs a display"}
    assert results["pkg.crash"]["ok"] is False
    assert "died while importing it (killed by SIGSEGV)" in results["pkg.crash"]["error"]
    assert "exited while importing it (exit 0)" in results["pkg.quits"]["error"]
    assert results["pkg.good"]["ok"] and results["pkg.zz_after"]["ok"]


def test_a_hung_import_is_charged_and_the_rest_go_on(venv: tuple[check.Env, str], monkeypatch) -> None:
    env, work = venv
    Path(env.site, "hangs.py").write_text("import time\ntime.sleep(60)\n")
    Path(env.site, "zz.py").write_text("")
    monkeypatch.setattr(check, "IMPORT_TIMEOUT", 1)
    results = check.import_all(env, ["hangs", "zz"], {}, work)
    assert results["hangs"]["error"] == "its import did not finish within 1 s"
    assert results["zz"]["ok"]


# --- what Python 2.6 cannot parse stays out ----------------------------------------------------

def test_guest_code_stays_python_26_compatible() -> None:
    sources = {str(p): p.read_text() for p in GUEST_FILES}
    sources["CHILD"] = check.CHILD
    sources["SHIM"] = build.SHIM
    for name, source in sources.items():
        tree = ast.parse(source)
        for node in ast.walk(tree):
            where = f"{name}:{getattr(node, 'lineno', '?')}"
            assert not isinstance(node, (ast.JoinedStr, ast.SetComp, ast.DictComp, ast.Set, ast.YieldFrom,
                                         ast.Nonlocal, ast.AsyncFunctionDef, ast.AnnAssign)), where
            if isinstance(node, ast.With):
                assert len(node.items) == 1, where + ": several context managers in one with"
            if isinstance(node, ast.arguments):
                assert not node.kwonlyargs and not getattr(node, "posonlyargs", []), where
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                assert node.func.attr not in ("check_output", "run", "format_map"), where
                if node.func.attr == "format" and isinstance(node.func.value, ast.Constant):
                    assert "{}" not in node.func.value.value, where + ": 2.6 needs {0}"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert "argparse" not in names and "pathlib" not in names, where
        if name.endswith(".py") and "def " in source:
            assert "from __future__ import absolute_import, print_function" in source, name


# --- prepared environments ----------------------------------------------------------------------

@pytest.fixture(params=["tar", "tarfile"])
def untar(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """unpack_tree with the system's tar, and without one (Python's tarfile)."""
    if request.param == "tarfile":
        monkeypatch.setattr(common, "which", lambda name, path=None: None)
    return str(request.param)


def test_a_prepared_tree_unpacks_whole_into_an_empty_work_folder(tmp_path: Path, untar: str) -> None:
    made = tmp_path / "made"
    (made / "venv" / "bin").mkdir(parents=True)
    (made / "venv" / "bin" / "python").write_text("#!/bin/sh\n")
    (made / "venv" / "bin" / "python").chmod(0o755)
    (made / "venv" / "lib").symlink_to("/usr/lib")  # a virtualenv's absolute links stay as they are
    (made / "scratch").mkdir()  # not asked for: stays out
    common.write_tree(str(tmp_path / "tree.tar"), str(made), ("venv", "absent"))
    work = tmp_path / "work"
    (work / "left-over").mkdir(parents=True)
    spec = {"work": str(work), "prepared_tar": str(tmp_path / "tree.tar"), "prepared_env": "prepared"}
    assert common.unpack_tree(spec, drop=("prepared_env",)) is True
    assert sorted(os.listdir(work)) == ["venv"]
    assert os.access(work / "venv" / "bin" / "python", os.X_OK)
    assert os.readlink(work / "venv" / "lib") == "/usr/lib"
    assert spec["prepared_env"] == "prepared"


def test_a_broken_prepared_tree_leaves_an_empty_work_folder_and_the_guest_makes_its_own(tmp_path: Path, untar: str) -> None:
    made = tmp_path / "made"
    (made / "venv").mkdir(parents=True)
    (made / "venv" / "big").write_bytes(os.urandom(200_000))
    common.write_tree(str(tmp_path / "tree.tar"), str(made), ("venv",))
    data = (tmp_path / "tree.tar").read_bytes()
    (tmp_path / "tree.tar").write_bytes(data[: len(data) // 2])  # cut short
    spec = {"work": str(tmp_path / "work"), "prepared_tar": str(tmp_path / "tree.tar"),
            "prepared_env": "prepared", "pip_dir": "/x"}
    assert common.unpack_tree(spec, drop=("prepared_env", "pip_dir")) is False
    assert os.listdir(tmp_path / "work") == []
    assert "prepared_env" not in spec and "pip_dir" not in spec


def test_a_build_uses_the_prepared_virtualenv_only_when_it_is_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[str] = []
    monkeypatch.setattr(build, "make_virtualenv", lambda wheel, dest, work: made.append(dest) or dest + "/bin/python")
    work = tmp_path / "work"
    spec = {"virtualenv": "/builder/tools/virtualenv.whl", "prepared_env": "virtualenv (made once)"}
    assert build.build_python(spec, str(work)) == str(work / "venv" / "bin" / "python")
    assert made == [str(work / "venv")]  # said prepared, but not unpacked: made here
    (work / "venv" / "bin").mkdir(parents=True)
    (work / "venv" / "bin" / "python").write_text("")
    assert build.build_python(spec, str(work)) == str(work / "venv" / "bin" / "python")
    assert len(made) == 1
    assert build.build_python({"virtualenv": None}, str(work)) == sys.executable

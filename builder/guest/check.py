# Install one artifact the way production will and prove it works, inside a runtime guest (the
# production image: no compiler, no network).
#
#   PYTHON check.py SPEC.json
#
# Each step records what it found in OUT/check-result.json and the run goes on as far as it
# sensibly can, so one run reports every problem. Exits 0 only if all is well.
# Runs unchanged on Python 2.6, 2.7 and 3.6+ (see _common.py for what that rules out).
# Longer than a host module may be: it is one file the host copies into every runtime guest (with
# _common.py), and splitting it would add a file to every cell's input key for no reader's gain.
from __future__ import absolute_import, print_function

import csv
import json
import os
import re
import shutil
import sys
import time
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (GuestError, capture, describe_exit, environ, fresh_dir, load_spec,  # noqa: E402
                     make_virtualenv, one_line, prepare_tree, python_version, say, tail, unpack, unpack_tree,
                     which, write_json)

PY2 = sys.version_info[0] == 2
COMPILER_NAMES = ("gcc", "cc", "g++", "c++", "clang", "clang++", "tcc")
COMPILER = re.compile(r"^([A-Za-z0-9_.]+-)*(cc|gcc|c\+\+|g\+\+|clang|clang\+\+|tcc)(-[0-9.]+)?$")
COMPILER_DIRS = ("/usr/bin", "/usr/local/bin")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
IMPORT_TIMEOUT = 300  # seconds for one importing child; a hung import is reported, not waited on
TEST_TIMEOUT = 1800

# The importing child, given as -c code so that nothing of ours is on its sys.path: the cwd is
# an empty folder, so every module comes from the installed artifact or the standard library.
# It appends one JSON line when it starts a module and one when it is done, flushed, so if the
# interpreter dies (a segfault in an extension) the parent knows which import killed it.
CHILD = r"""
import json, os, sys
listing = json.load(open(sys.argv[1]))
compiled = listing['compiled']
results = open(sys.argv[2], 'a')

def text(value):
    # unicode() first on Python 2, where str() of an exception with non-ASCII text raises.
    try:
        return type(u'')(value)
    except Exception:
        pass
    try:
        return str(value).decode('utf-8', 'replace')
    except Exception:
        return repr(value)

def emit(record):
    results.write(json.dumps(record) + '\n')
    results.flush()

def how_loaded(name, module):
    # Python 3: the loader says it; __file__ cannot (an egg stub .py can sit beside the .so).
    # Python 2: ask imp which file the name resolves to on the package path, and of what type.
    if sys.version_info[0] >= 3:
        import importlib.machinery
        return isinstance(getattr(module, '__loader__', None), importlib.machinery.ExtensionFileLoader)
    import imp
    parent, _, last = name.rpartition('.')
    path = None
    if parent:
        path = getattr(sys.modules[parent], '__path__', None)
    handle, found, description = imp.find_module(last, path)
    if handle:
        handle.close()
    loaded = getattr(module, '__file__', None) or ''
    return description[2] == imp.C_EXTENSION and os.path.realpath(found) == os.path.realpath(loaded)

for name in listing['modules']:
    emit({'start': name})
    record = {'name': name}
    try:
        __import__(name)
        module = sys.modules[name]
        record['ok'] = True
    except BaseException:
        error = sys.exc_info()[1]
        record['ok'] = False
        record['error'] = '%s: %s' % (type(error).__name__, text(error))
    if record['ok']:
        record['file'] = text(getattr(module, '__file__', None))
        if name in compiled:
            try:
                record['extension'] = how_loaded(name, module)
            except Exception:
                record['extension'] = False
                record['file'] += ' (%s)' % text(sys.exc_info()[1])
    emit(record)

# Leave without running atexit handlers or waiting for threads some import started: what
# matters is recorded, and a hang or crash at shutdown is no import failure.
results.close()
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
"""


# --- pure helpers (unit-tested on the host) ---------------------------------------------------

def is_compiler(name):
    return bool(COMPILER.match(name))


def find_compilers(path_env, extra_dirs=COMPILER_DIRS):
    """Compiler drivers on PATH or in the usual folders, one path per real file: with merged
    /usr, /bin/gcc, /usr/bin/cc and /usr/bin/x86_64-linux-gnu-gcc-12 are all one compiler."""
    found = []
    seen = set()
    for folder in path_env.split(os.pathsep) + list(extra_dirs):
        try:
            names = [n for n in os.listdir(folder) if is_compiler(n)]
        except OSError:
            continue
        # The plain names first, so the report says /usr/bin/gcc rather than an alias of it.
        names.sort(key=lambda n: (n not in COMPILER_NAMES, COMPILER_NAMES.index(n) if n in COMPILER_NAMES else 0, n))
        for name in names:
            path = os.path.join(folder, name)
            real = os.path.realpath(path)
            if real not in seen and os.path.isfile(path) and os.access(path, os.X_OK):
                seen.add(real)
                found.append(path)
    return found


# The base system's own compiler folder on FreeBSD: cc/c++ (clang) ship with every install, as
# sh does; "toolless" there means nothing beyond them (README: "FreeBSD and toolless").
BASE_TOOLCHAIN = {"freebsd": ("/usr/bin/",)}

# How each family asks whether an OS package is installed: (argv before the name, installed?).
PACKAGE_QUERY = {
    "debian": (["dpkg-query", "-W", "-f=${Status}"], lambda code, out: code == 0 and "install ok installed" in out),
    "redhat": (["rpm", "-q"], lambda code, out: code == 0),
    "freebsd": (["pkg", "info", "-e"], lambda code, out: code == 0),
}


# How each family tells an installed package's version and architecture, and lists its files.
PACKAGE_DETAILS = {
    "debian": (["dpkg-query", "-W", "-f=${Version}\t${Architecture}\n"], ["dpkg-query", "-L"]),
    "redhat": (["rpm", "-q", "--qf", "%{VERSION}-%{RELEASE}\t%{ARCH}\n"], ["rpm", "-ql"]),
    "freebsd": (["pkg", "query", "%v\t%q\n"], ["pkg", "query", "%Fp"]),
}
SONAME_FILE = re.compile(r"^lib[^/]*\.so(\.[0-9]+)+$")


def sonames_of(paths):
    """The sonames among a package's files: lib*.so.N[.M...] names, less those that only lengthen
    another (libyaml-0.so.2.0.9 is the file libyaml-0.so.2, the soname, points at)."""
    names = set(os.path.basename(p.strip()) for p in paths if SONAME_FILE.match(os.path.basename(p.strip())))
    return sorted(n for n in names if not any(n.startswith(other + ".") for other in names))


def os_packages(family, names):
    """The run-time OS packages as this image has them installed: name, exact version,
    architecture and the sonames each provides; version None for one that is not installed."""
    details = PACKAGE_DETAILS.get(family)
    found = []
    for name in names:
        entry = {"name": name, "version": None, "arch": None, "sonames": []}
        if details:
            code, output = capture(details[0] + [name], env=environ({"LC_ALL": "C"}))
            lines = output.strip().splitlines()
            if code == 0 and lines and "\t" in lines[0]:
                entry["version"], entry["arch"] = lines[0].split("\t", 1)
                code, files = capture(details[1] + [name], env=environ({"LC_ALL": "C"}))
                entry["sonames"] = sonames_of(files.splitlines()) if code == 0 else []
        found.append(entry)
    return found


def toolchain_reasons(family, compilers, installed_build_only):
    """Why a runtime guest is not toolless, per family; (reasons, allowed base compilers).

    Debian and RHEL: any compiler at all. FreeBSD: the base system's cc in /usr/bin is part of
    every FreeBSD and allowed; any other compiler (pkg's gcc or llvm in /usr/local) is not.
    Every family: none of the package's build-only OS packages may be installed."""
    base = [c for c in compilers if any(c.startswith(d) for d in BASE_TOOLCHAIN.get(family, ()))]
    extra = [c for c in compilers if c not in base]
    reasons = []
    if extra:
        reasons.append("runtime image has a compiler: %s (the runtime target must not install one)" % ", ".join(extra))
    if installed_build_only:
        reasons.append("runtime image has build-only packages installed: %s (they belong to the build machine "
                       "only: the package's system.%s.build list)" % (", ".join(installed_build_only), family))
    return reasons, base


def installed_packages(family, names):
    """(the names that are installed, a problem if they could not be asked about)."""
    if not names or family not in PACKAGE_QUERY:
        return [], None
    prefix, installed = PACKAGE_QUERY[family]
    if not which(prefix[0], os.environ.get("PATH", "") + os.pathsep + "/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"):
        return [], "no %s in the runtime image, so the build-only packages %s could not be checked" % (
            prefix[0], ", ".join(names))
    found = []
    for name in names:
        code, output = capture(prefix + [name], env=environ({"LC_ALL": "C"}))
        if installed(code, output):
            found.append(name)
    return found, None


def module_for(path):
    """(dotted name, kind) for a file of an installed distribution, or None if it is no module.
    kind: 'source', 'bytecode' or 'compiled'. ABI tags are dropped: yaml/_yaml.cpython-311-
    x86_64-linux-gnu.so and Python 2's yaml/_yaml.so are both yaml._yaml."""
    parts = path.replace("\\", "/").strip("/").split("/")
    top = parts[0]
    if top == "EGG-INFO" or top.endswith((".dist-info", ".egg-info", ".data")) or "__pycache__" in parts:
        return None
    base = parts[-1]
    if base.endswith(".py"):
        stem, kind = base[:-3], "source"
    elif base.endswith((".pyc", ".pyo")):
        stem, kind = base[:-4], "bytecode"
    elif base.endswith((".so", ".pyd")):
        stem, kind = base.split(".")[0], "compiled"
    else:
        return None
    names = parts[:-1] + ([] if stem == "__init__" else [stem])
    if not names or not all(IDENTIFIER.match(n) for n in names):
        return None
    return ".".join(names), kind


def skipped(name, skips):
    for skip in skips:
        if name == skip or name.startswith(skip + "."):
            return True
    return False


# Where an installed distribution keeps what it says of itself: an egg's EGG-INFO, a wheel's
# NAME-VERSION.dist-info (setuptools copies top_level.txt and namespace_packages.txt there).
METADATA_DIRS = ("EGG-INFO",)
METADATA_SUFFIXES = (".dist-info", ".egg-info")
# The quoted parts a -nspkg.pth line joins to the site folder: *('zope',) or *('google', 'cloud').
NSPKG_PARTS = re.compile(r"\*\(((?:\s*(?:'[^']*'|\"[^\"]*\")\s*,?)+)\)")
QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")
# "No module named 'zope.testing'" (Python 3) or "No module named testing" (Python 2, last part only).
MISSING_MODULE = re.compile(r"^(?:ModuleNotFoundError|ImportError): No module named '?([A-Za-z0-9_.]+)'?\s*$")
TEST_PACKAGES = ("tests", "test")


def is_metadata(path):
    top = path.replace("\\", "/").strip("/").split("/")[0]
    return top in METADATA_DIRS or top.endswith(METADATA_SUFFIXES + (".data",))


def _names(text):
    found = []
    for line in (text or "").splitlines():
        line = line.strip().replace("/", ".")
        if line and not line.startswith("#") and line not in found:
            found.append(line)
    return found


def nspkg_namespaces(text):
    """The namespace packages a -nspkg.pth file makes at interpreter start (one per line)."""
    found = []
    for line in (text or "").splitlines():
        match = NSPKG_PARTS.search(line)
        if match:
            name = ".".join([a or b for a, b in QUOTED.findall(match.group(1))])
            if name and name not in found:
                found.append(name)
    return found


def artifact_layout(paths, read):
    """(top-level names or None, declared namespace packages) from what an installed artifact says
    of itself: top_level.txt and namespace_packages.txt of its EGG-INFO or .dist-info, and the
    -nspkg.pth files a wheel of a pkg_resources-style namespace installs instead of the
    namespace's __init__.py. `read(path)` gives the text of one of `paths`, or None."""
    top_level = None
    declared = []
    for path in paths:
        parts = path.replace("\\", "/").strip("/").split("/")
        if len(parts) == 2 and (parts[0] in METADATA_DIRS or parts[0].endswith(METADATA_SUFFIXES)):
            if parts[1] == "top_level.txt":
                names = [n.split(".")[0] for n in _names(read(path))]
                top_level = sorted(set((top_level or []) + names))
            elif parts[1] == "namespace_packages.txt":
                declared += _names(read(path))
        elif len(parts) == 1 and parts[0].endswith("-nspkg.pth"):
            declared += nspkg_namespaces(read(path))
    return top_level, sorted(set(declared))


def runtime_requirements(paths, read):
    """The names of the distributions an artifact needs at run time (canonical: lower case, runs of
    -_. as one -): requires.txt's lines outside [extra] sections, or Requires-Dist lines without
    an `extra ==` marker."""
    found = set()
    for path in paths:
        parts = path.replace("\\", "/").strip("/").split("/")
        if len(parts) != 2 or not (parts[0] in METADATA_DIRS or parts[0].endswith(METADATA_SUFFIXES)):
            continue
        if parts[1] == "requires.txt":
            extra = False
            for line in (read(path) or "").splitlines():
                line = line.strip()
                if line.startswith("[") and line.endswith("]"):
                    extra = bool(line[1:-1].partition(":")[0].strip())
                elif line and not line.startswith("#") and not extra:
                    found.add(line)
        elif parts[1] == "METADATA":
            for line in (read(path) or "").splitlines():
                if line.startswith("Requires-Dist:"):
                    text = line.split(":", 1)[1]
                    if not re.search(r"\bextra\s*==", text.partition(";")[2]):
                        found.add(text.strip())
    names = set()
    for line in found:
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
        if match:
            names.add(canonical(match.group(0)))
    return names


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def is_test_module(name):
    """A module of a test package (greenlet.tests, zope.interface.tests.test_ro, numpy.core.tests):
    it may import the package's test-only requirements (README: "Test packages")."""
    return any(part in TEST_PACKAGES for part in name.split("."))


def scan_modules(paths, skips=(), keep=(), top_level=None, namespaces=()):
    """The modules an artifact installs, from its files (an egg's tree, a wheel's RECORD), as a dict:
    modules (to import), compiled ({module: its .so files}), namespaces (the namespace packages
    they sit in), unplaced ({module-like name: files} that no importable package holds).

    A folder is a package if it has an __init__; a namespace package (no __init__) if it is
    declared (namespace_packages.txt, a -nspkg.pth: `namespaces`) or, PEP 420, if it is at the
    top (a top-level name of `top_level`, or any when the artifact has no top_level.txt) or in
    another namespace; a folder without __init__ inside a regular package holds data, and its .py
    files are left alone. `__main__` modules are left out because importing one runs the program.
    Names in `keep` (the required extensions) are imported even under a skipped package."""
    found = {}
    packages = set()
    for path in paths:
        hit = module_for(path)
        if hit is None:
            continue
        found.setdefault(hit[0], []).append((path, hit[1]))
        if os.path.basename(path).split(".")[0] == "__init__":
            packages.add(hit[0])
    declared = set()
    for name in namespaces:
        parts = name.split(".")
        declared.update([".".join(parts[:i + 1]) for i in range(len(parts))])
    kinds = {}

    def kind(name):
        """'package', 'namespace' or None (not importable as a package) for a folder."""
        if name not in kinds:
            parent = name.rpartition(".")[0]
            above = kind(parent) if parent else "namespace"
            if above is None:
                kinds[name] = None
            elif name in packages:
                kinds[name] = "package"
            elif name in declared or (above == "namespace" and (
                    parent or top_level is None or name in top_level)):
                kinds[name] = "namespace"
            else:
                kinds[name] = None
        return kinds[name]

    modules = []
    compiled = {}
    used = set()
    unplaced = {}
    left_out = []
    for name in sorted(found):
        parent = name.rpartition(".")[0]
        if parent and kind(parent) is None:
            unplaced[name] = sorted([p for p, _ in found[name]])
            continue
        parts = name.split(".")
        used.update([".".join(parts[:i + 1]) for i in range(len(parts) - 1)
                     if kind(".".join(parts[:i + 1])) == "namespace" or ".".join(parts[:i + 1]) in declared])
        if parts[-1] == "__main__" or (skipped(name, skips) and name not in keep):
            left_out.append(name)
            continue
        modules.append(name)
        so_files = [p for p, what in found[name] if what == "compiled"]
        if so_files:
            compiled[name] = sorted(so_files)
    return {"modules": modules, "compiled": compiled, "namespaces": sorted(used), "unplaced": unplaced,
            "skipped": left_out}


def describe_scan(scan, content, fmt):
    """Step 4's line: what the scan found, never contradicting what ldd or step 6 will say."""
    modules, compiled = scan["modules"], scan["compiled"]
    tests = [m for m in modules if is_test_module(m)]
    text = "%d modules%s, compiled: %s" % (
        len(modules), " (%d in test packages)" % len(tests) if tests else "", ", ".join(sorted(compiled)) or "none")
    if scan["namespaces"]:
        text += "; in namespace packages %s" % ", ".join(scan["namespaces"])
    if scan["skipped"]:
        text += "; left out (skip_imports, __main__): %s" % ", ".join(scan["skipped"])
    if scan["unplaced"]:
        text += "; in no importable package: %s" % ", ".join(sorted(scan["unplaced"]))
    return text + " (from %d installed files, %s)" % (
        content, "the wheel's RECORD" if fmt == "wheel" else "the egg's files")


def enumerate_modules(paths, skips=(), keep=(), top_level=None, namespaces=()):
    """(modules to import, {compiled module: [its files]}): see scan_modules."""
    found = scan_modules(paths, skips, keep, top_level, namespaces)
    return found["modules"], found["compiled"]


def test_only_missing(name, error, own, requirements):
    """The module a test module's failed import was missing, when it is a test-only requirement:
    not one of the artifact's own (`own`: its modules, namespace packages aside), nor under one,
    nor named like one of its run-time requirements. None otherwise: then the failure counts."""
    if not is_test_module(name):
        return None
    match = MISSING_MODULE.match(error or "")
    if not match:
        return None
    missing = match.group(1)
    parts = missing.split(".")
    prefixes = [".".join(parts[:i + 1]) for i in range(len(parts))]
    if [p for p in prefixes if p in own] or [m for m in own if m.endswith("." + missing)]:
        return None
    if [p for p in prefixes if canonical(p) in requirements]:
        return None
    return missing


def is_shared_object(path):
    base = os.path.basename(path)
    return base.endswith(".so") or ".so." in base


LDD_MISSING = re.compile(r"^\s*(\S+)\s*=>\s*not found")
LDD_VERSION = re.compile(r"^(.*?): (\S+): version [`'](\S+?)' not found")


def parse_ldd(output):
    """(missing sonames, missing symbol versions) from ldd's output. A symbol version line names
    a library that does resolve (libc.so.6 is there, its GLIBC_2.33 is not), so looking only for
    `=> not found` misses it."""
    libs = []
    versions = []
    for line in output.splitlines():
        match = LDD_MISSING.match(line)
        if match and match.group(1) not in libs:
            libs.append(match.group(1))
            continue
        match = LDD_VERSION.match(line.strip())
        if match:
            label = "%s (%s)" % (match.group(3), os.path.basename(match.group(2)))
            if label not in versions:
                versions.append(label)
    return libs, versions


def record_paths(text):
    """Installed files from a wheel's RECORD, relative to the site folder; entries outside it
    (scripts in ../../../bin) are not the distribution's modules."""
    paths = []
    for row in csv.reader(text.splitlines()):
        if not row or not row[0]:
            continue
        path = row[0]
        if path.startswith("/") or path.split("/")[0] == "..":
            continue
        paths.append(path)
    return paths


def python_tag_mismatch(artifact, version_info):
    """An egg says its Python in its name (-py2.7-); installing it elsewhere cannot work."""
    match = re.search(r"-py(\d+)\.(\d+)", os.path.basename(artifact))
    if match and (int(match.group(1)), int(match.group(2))) != tuple(version_info[:2]):
        return "%s is for Python %s.%s, but the runtime Python is %d.%d" % (
            os.path.basename(artifact), match.group(1), match.group(2), version_info[0], version_info[1])
    return None


# --- steps ------------------------------------------------------------------------------------

class Env(object):
    """The fresh environment the artifact is installed into."""

    def __init__(self, root, how):
        self.root = root
        self.how = how
        self.python = os.path.join(root, "bin", "python")
        self.site = None

    def variables(self, work):
        return environ({
            "PATH": os.path.join(self.root, "bin") + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
            "VIRTUAL_ENV": self.root,
            "HOME": os.path.join(work, "home"),
            "PYTHON_EGG_CACHE": os.path.join(work, "egg-cache"),
            "PYTHONNOUSERSITE": "1",
            "PIP_NO_INDEX": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }, drop=("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL",
                 "PIP_FIND_LINKS"))


def make_env(spec, work):
    dest = os.path.join(work, "env")
    if os.path.isdir(dest):
        shutil.rmtree(dest)
    if not PY2:
        code, output = capture([sys.executable, "-m", "venv", "--without-pip", dest], echo=True)
        if code == 0:
            return Env(dest, "venv --without-pip")
        if not spec.get("virtualenv"):
            raise GuestError("python -m venv failed (%s): %s" % (describe_exit(code), one_line(tail(output, 2))))
    if not spec.get("virtualenv"):
        raise GuestError("Python %s has no venv and the platform has no virtualenv tool: add virtualenv "
                         "to the platform's tools" % python_version())
    make_virtualenv(spec["virtualenv"], dest, work)
    return Env(dest, "virtualenv")


class Envs(object):
    """Fresh environments for the artifacts one guest checks, one after the other. The first is
    made for real; when more follow, an untouched copy of it is kept and each later artifact gets
    a copy of that at the same path: the same files a new environment would have, without paying
    again for a virtualenv (about 2 s on Python 2.7) per format."""

    def __init__(self, spec, work, keep):
        self.spec = spec
        self.work = work
        self.keep = keep
        self.dest = os.path.join(work, "env")
        self.pristine = os.path.join(work, "env-untouched")
        self.how = None

    def fresh(self):
        prepared = self.spec.get("prepared_env")
        if self.how is None and prepared and os.path.isfile(os.path.join(self.dest, "bin", "python")):
            # Made by prepare() in another guest of this runtime image, at this very path,
            # from the same verified tool, and never used: what make_env would make here.
            self.how = prepared
            if self.keep:
                shutil.copytree(self.dest, self.pristine, symlinks=True)
            return Env(self.dest, self.how)
        if self.how is None:
            env = make_env(self.spec, self.work)
            self.how = env.how
            if self.keep:
                shutil.copytree(self.dest, self.pristine, symlinks=True)
            return env
        shutil.rmtree(self.dest)
        shutil.copytree(self.pristine, self.dest, symlinks=True)
        return Env(self.dest, "%s (a fresh copy of the untouched one)" % self.how)


def site_dirs(env, work):
    """The env's site folders, asked of its python: sys.path entries under its prefix. (Old
    virtualenvs' site.py has no getsitepackages, and Debian patches sysconfig's schemes.)"""
    code, output = capture([env.python, "-c", "import sys, json; print(json.dumps([sys.prefix] + sys.path))"],
                           env=env.variables(work))
    if code != 0:
        raise GuestError("the test environment's python does not start (%s): %s"
                         % (describe_exit(code), one_line(tail(output, 2))))
    paths = json.loads(output.strip().splitlines()[-1])
    prefix = os.path.realpath(paths[0])
    found = []
    for path in paths[1:]:
        real = os.path.realpath(path)
        if real.startswith(prefix + os.sep) and os.path.basename(real) in ("site-packages", "dist-packages") \
                and os.path.isdir(real) and real not in found:
            found.append(real)
    if not found:
        raise GuestError("the test environment has no site-packages folder on its sys.path")
    return found


def install_egg(egg, env, work, reasons):
    """Prefer easy_install (what production runs where it exists), unzipped and offline; else,
    or if it fails, unzip into site-packages and add a .pth line. Either way the egg ends up a
    folder: zipped eggs extract extensions into a cache under HOME on Python 2 and never load
    Cython modules as extensions on Python 3 (setuptools#2071)."""
    name = os.path.basename(egg)
    target = os.path.join(env.site, name)
    easy = os.path.join(env.root, "bin", "easy_install")
    if os.path.isfile(easy):
        # --no-deps and a local file: nothing to look up; the index URL leads nowhere in case.
        code, output = capture([env.python, easy, "--always-unzip", "--no-deps",
                                "--index-url", "file:///nonexistent", "--allow-hosts", "localhost", egg],
                               env=env.variables(work), cwd=os.path.join(work, "empty"), echo=True)
        if code == 0 and os.path.isdir(target):
            return target, "easy_install --always-unzip"
        reasons.append("easy_install could not install %s offline (%s): %s"
                       % (name, describe_exit(code), one_line(tail(output, 2))))
    if os.path.exists(target):
        fresh_dir(target)
    unpack(egg, target)
    pth = open(os.path.join(env.site, "builder-eggs.pth"), "a")
    try:
        pth.write("./%s\n" % name)
    finally:
        pth.close()
    say("unzipped %s into %s" % (name, env.site))
    return target, "unzip + .pth"


def install_wheel(wheel, env, spec, work):
    if os.path.isfile(os.path.join(env.root, "bin", "pip")):
        pip, how = [env.python, "-m", "pip"], "pip (in the env)"
    elif spec.get("pip_dir") and os.path.isdir(os.path.join(work, spec["pip_dir"], "pip")):
        # The same pip wheel, unpacked and byte-compiled once per platform by this image's
        # Python (prepare()): run from its wheel, pip compiles itself anew every time (1-5 s).
        pip, how = [env.python, os.path.join(work, spec["pip_dir"], "pip")], "pip (from %s, unpacked)" % (
            os.path.basename(spec.get("pip") or "its wheel"))
    elif spec.get("pip"):
        # pip runs from its own wheel, so the runtime image needs no pip of its own.
        pip, how = [env.python, os.path.join(spec["pip"], "pip")], "pip (from %s)" % os.path.basename(spec["pip"])
    else:
        raise GuestError("no pip to install %s with: add pip to the platform's tools" % os.path.basename(wheel))
    code, output = capture(pip + ["install", "--no-index", "--no-deps", "--no-cache-dir",
                                  "--disable-pip-version-check", wheel],
                           env=env.variables(work), cwd=os.path.join(work, "empty"), echo=True)
    if code != 0:
        raise GuestError("pip could not install %s offline (%s): %s"
                         % (os.path.basename(wheel), describe_exit(code), one_line(tail(output, 2))))
    return how


def wheel_files(wheel, sites):
    """(site folder, installed files) from the RECORD of the wheel's .dist-info."""
    zf = zipfile.ZipFile(wheel)
    try:
        tops = sorted(set([n.split("/")[0] for n in zf.namelist() if n.split("/")[0].endswith(".dist-info")]))
    finally:
        zf.close()
    if len(tops) != 1:
        raise GuestError("%s has %d .dist-info folders, expected one" % (os.path.basename(wheel), len(tops)))
    for site in sites:
        record = os.path.join(site, tops[0], "RECORD")
        if os.path.isfile(record):
            handle = open(record, "rb")
            try:
                data = handle.read()
            finally:
                handle.close()
            # Python 2's csv reads bytes only; Python 3's reads text only.
            return site, record_paths(data if PY2 else data.decode("utf-8"))
    raise GuestError("after installing %s, %s/RECORD is in no site folder" % (os.path.basename(wheel), tops[0]))


def tree_files(root):
    paths = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            paths.append(os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/"))
    return paths


def reader(root):
    """read(path) for the metadata files of an installed artifact (paths relative to root)."""

    def read(rel):
        try:
            handle = open(os.path.join(root, rel), "rb")
        except (IOError, OSError):
            return None
        try:
            return handle.read().decode("utf-8", "replace")
        finally:
            handle.close()

    return read


def scan_installed(root, files, skips=(), keep=()):
    """scan_modules of an installed artifact, its own metadata read from where it was installed
    (root: the egg's folder, or the site folder a wheel's RECORD is relative to), with the
    run-time requirements it names."""
    read = reader(root)
    top_level, declared = artifact_layout(files, read)
    scan = scan_modules(files, skips, keep, top_level, declared)
    scan["top_level"], scan["declared"] = top_level, declared
    scan["requirements"] = runtime_requirements(files, read)
    return scan


def import_all(env, modules, compiled, work):
    """Import every module in one child; if the child dies or hangs, the module it was importing
    is charged with it and a new child goes on with the rest."""
    results = {}
    remaining = list(modules)
    listing = os.path.join(work, "imports.json")
    progress = os.path.join(work, "imports.out")
    while remaining:
        handle = open(listing, "w")
        try:
            handle.write(json.dumps({"modules": remaining, "compiled": sorted(compiled)}))
        finally:
            handle.close()
        open(progress, "w").close()
        code, output = capture([env.python, "-c", CHILD, listing, progress], cwd=os.path.join(work, "empty"),
                               env=env.variables(work), timeout=IMPORT_TIMEOUT)
        if output.strip():
            say(output.rstrip())
        started = None
        handle = open(progress)
        try:
            lines = handle.read().splitlines()
        finally:
            handle.close()
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            if "start" in record:
                started = record["start"]
            else:
                results[record["name"]] = record
                started = None
        left = [m for m in remaining if m not in results]
        if left:
            culprit = started or left[0]
            if code is None:
                why = "its import did not finish within %d s" % IMPORT_TIMEOUT
            elif code < 0:
                why = "the interpreter died while importing it (%s)" % describe_exit(code)
            else:
                why = "the interpreter exited while importing it (%s)" % describe_exit(code)
            results[culprit] = {"name": culprit, "ok": False, "error": why}
            say("import %s: %s; going on with the rest in a new interpreter" % (culprit, why))
        remaining = [m for m in remaining if m not in results]
    return results


def run_ldd(root, so_files):
    ldd = which("ldd") or which("ldd", "/usr/bin:/bin")
    libs = {}
    versions = {}
    if not so_files:
        return None, libs, versions
    if not ldd:
        return ("no ldd in the runtime image, so the shared libraries of %s could not be checked: "
                "install the package that provides ldd" % ", ".join(so_files)), libs, versions
    for rel in so_files:
        code, output = capture([ldd, os.path.join(root, rel)], env=environ({"LC_ALL": "C"}))
        say("ldd %s:\n%s" % (rel, output.rstrip()))
        missing, old = parse_ldd(output)
        if missing:
            libs[rel] = missing
        if old:
            versions[rel] = old
    return None, libs, versions


def run_test(command, env, work):
    say("$ sh -c %r" % command)
    code, output = capture(["sh", "-c", command], cwd=os.path.join(work, "empty"), env=env.variables(work),
                           timeout=TEST_TIMEOUT)
    if output.strip():
        say(output.rstrip())
    return {"ran": True, "returncode": code, "output_tail": tail(output, 30)}


def install(spec, env, work, reasons):
    """Step 3: deps first, then the artifact. (folder the files are relative to, its files,
    what `installed` reports, how it was installed)."""
    artifact = spec["artifact"]
    if spec["format"] == "egg":
        mismatch = python_tag_mismatch(artifact, sys.version_info)
        if mismatch:
            reasons.append(mismatch)
        for dep in spec.get("deps") or []:
            install_egg(dep, env, work, reasons)
        root, how = install_egg(artifact, env, work, reasons)
        return root, tree_files(root), [root], how
    if spec["format"] == "wheel":
        for dep in spec.get("deps") or []:
            install_wheel(dep, env, spec, work)
        how = install_wheel(artifact, env, spec, work)
        root, files = wheel_files(artifact, site_dirs(env, work))
        return root, files, [os.path.join(root, f) for f in files], how
    raise GuestError("unknown format %r (expected egg or wheel)" % spec["format"])


def judge_extensions(wanted, compiled, imports, artifact_name, status, reasons, unplaced=None, scan_failed=False,
                     apart=None):
    """Step 6: every compiled module must have loaded as an extension; a named one must exist
    (else the build fell back to pure Python); with none named, at least one must exist. A
    compiled file the scan could not place in a package is the scan's failure, never called a
    fallback (ldd still shows it), and after a failed scan nothing more is said of extensions."""
    unplaced = unplaced or {}
    apart = apart or {}
    stray = sorted([f for files in unplaced.values() for f in files if f.endswith((".so", ".pyd"))])
    for mod in sorted(compiled):
        record = imports.get(mod, {})
        if not record.get("ok") and mod in apart:
            # In a test package that needs a test-only requirement: not proven, and said so when
            # it is a named extension or the only kind of compiled module the artifact has.
            status[mod] = "test-only-requirement-missing"
            if mod in (wanted or []):
                reasons.append("%s is a named extension but could not be imported: %s" % (mod, one_line(apart[mod], 240)))
        elif not record.get("ok"):
            status[mod] = "import-failed"  # the import failure is already a reason
        elif record.get("extension"):
            status[mod] = "extension"
        else:
            status[mod] = "not-extension"
            reasons.append("%s has a compiled module but did not load it as an extension (it loaded %s): "
                           "install eggs unzipped" % (mod, record.get("file")))
    if scan_failed:
        return
    if wanted is None:
        if compiled and not [m for m in compiled if m not in apart]:
            reasons.append("no compiled module of %s could be imported: its only ones (%s) are in test packages "
                           "that need test-only requirements; name the extensions the package must have in "
                           "`extensions:`, or `extensions: []` if it is pure Python" % (
                               artifact_name, ", ".join(sorted(compiled))))
        elif not compiled and stray:
            reasons.append("%s has compiled files that the module scan placed in no importable package (%s), so "
                           "whether they load as extensions is not proven: an error of builder's scan, not a "
                           "pure-Python fallback; name them in `extensions:` or report it" % (
                               artifact_name, ", ".join(stray)))
        elif not compiled:
            reasons.append("no compiled module in %s: it was built without its C extensions (a pure-Python "
                           "fallback); give the package its build requirements, or `extensions: []` if it is "
                           "pure Python" % artifact_name)
        return
    for mod in wanted:
        if mod in compiled:
            continue
        status[mod] = "not-extension"
        if [f for f in unplaced.get(mod, []) if f.endswith((".so", ".pyd"))]:
            reasons.append("%s is in %s (%s) but the module scan placed it in no importable package, so it "
                           "was not imported: an error of builder's scan, not a pure-Python fallback" % (
                               mod, artifact_name, ", ".join(unplaced[mod])))
        else:
            reasons.append("%s was not built as an extension (the package fell back to pure Python: check "
                           "its build-time requirements)" % mod)


def judge_libraries(root, files, result, reasons):
    """Step 7: ldd on every shared object; each missing soname or symbol version is a reason."""
    problem, libs, versions = run_ldd(root, [f for f in files if is_shared_object(f)])
    if problem:
        reasons.append(problem)
    result["missing_libraries"] = libs
    result["missing_versions"] = versions
    for so in sorted(libs):
        for lib in libs[so]:
            reasons.append("%s needs %s, which the runtime image does not have: add the package that provides "
                           "it to the package's system.<family>.runtime list" % (so, lib))
    for so in sorted(versions):
        reasons.append("%s needs %s, newer than the runtime image provides: build on an image no newer "
                       "than production" % (so, ", ".join(versions[so])))


def check(spec, result, envs):
    reasons = result["reasons"]
    timings = result["timings"]
    name = os.path.basename(spec["artifact"])
    work = spec["work"]
    if not os.path.isdir(work):
        os.makedirs(work)
    # HOME, the egg cache and the cwd are new for every artifact, like the environment.
    for sub in ("home", "egg-cache", "empty"):
        fresh_dir(os.path.join(work, sub))

    family = spec.get("family") or "debian"
    say("step 1: no compiler and no build-only package in the runtime image (%s)" % family)
    compilers = find_compilers(os.environ.get("PATH", ""))
    installed, problem = installed_packages(family, spec.get("build_only") or [])
    if problem:
        reasons.append(problem)
    found, result["base_compilers"] = toolchain_reasons(family, compilers, installed)
    result["compilers"] = [c for c in compilers if c not in result["base_compilers"]]
    result["build_only_installed"] = installed
    if result["base_compilers"]:
        say("the base system's own compiler, allowed on %s: %s" % (family, ", ".join(result["base_compilers"])))
    reasons.extend(found)

    say("step 2: a fresh environment")
    started = time.time()
    env = envs.fresh()
    env.site = site_dirs(env, work)[0]
    result["environment"] = env.how
    timings["env"] = round(time.time() - started, 3)
    say("%s in %.1f s; site folder %s" % (env.how, time.time() - started, env.site))

    say("step 3: install %s offline" % name)
    started = time.time()
    root, files, result["installed"], result["installer"] = install(spec, env, work, reasons)
    timings["install"] = round(time.time() - started, 3)

    say("step 4: the modules of %s" % name)
    wanted = spec.get("extensions")
    scan = scan_installed(root, files, spec.get("skip_imports") or [], wanted or [])
    modules, compiled = scan["modules"], scan["compiled"]
    result["modules"] = modules
    result["namespaces"] = scan["namespaces"]
    content = [f for f in files if not is_metadata(f)]
    say(describe_scan(scan, len(content), spec["format"]))
    scan_failed = bool(content) and not modules and not scan["skipped"]
    if scan_failed:
        reasons.append("the module scan found no module among the %d files %s installs (%s): an error of "
                       "builder's scan, not of the package, and nothing of it was imported; report it with "
                       "this log" % (len(content), name, ", ".join(content[:5]) + (", ..." if len(content) > 5 else "")))

    say("step 5: import each module in %s" % env.python)
    started = time.time()
    imports = import_all(env, modules, compiled, work)
    timings["imports"] = round(time.time() - started, 3)
    own = set(modules + scan["skipped"]) - set(scan["namespaces"])
    for mod in modules:
        record = imports.get(mod, {})
        if record.get("ok"):
            continue
        error = record.get("error", "not imported")
        if test_only_missing(mod, error, own, scan["requirements"]):
            result["test_imports_apart"][mod] = error
            continue
        result["import_failures"][mod] = error
        reasons.append("import %s failed: %s" % (mod, one_line(error, 240)))
    apart = result["test_imports_apart"]
    if apart:
        say("%d module(s) of test packages need a test-only requirement the package does not need at run "
            "time; not failures: %s" % (len(apart), "; ".join(["%s (%s)" % (m, one_line(apart[m], 120))
                                                               for m in sorted(apart)])))

    say("step 6: compiled modules load as extensions")
    judge_extensions(wanted, compiled, imports, name, result["extensions"], reasons, scan["unplaced"], scan_failed,
                     result["test_imports_apart"])

    say("step 7: shared libraries")
    started = time.time()
    judge_libraries(root, files, result, reasons)
    result["os_packages"] = os_packages(family, spec.get("runtime_packages") or [])
    timings["ldd"] = round(time.time() - started, 3)

    if spec.get("test"):
        say("step 8: the package's test")
        started = time.time()
        result["test"] = test = run_test(spec["test"], env, work)
        timings["test"] = round(time.time() - started, 3)
        if test["returncode"] != 0:
            reasons.append("test command %s: %s" % (
                "timed out after %d s" % TEST_TIMEOUT if test["returncode"] is None
                else "failed (%s)" % describe_exit(test["returncode"]),
                one_line(tail(test["output_tail"], 3), 240) or "no output"))


def items_of(spec):
    """The artifacts to check: `items`, one per format, each with its own out folder (the one
    shape of a check spec: builder/cells/contract.py's CheckSpec)."""
    if not spec.get("items"):
        raise GuestError("the spec names no artifact to check (it needs items: see builder/cells/contract.py)")
    return spec["items"]


def check_one(spec, envs):
    out = spec["out"]
    if not os.path.isdir(out):
        os.makedirs(out)
    result = {"ok": False, "python": python_version(), "compilers": [], "base_compilers": [], "build_only_installed": [],
              "installed": [], "modules": [], "namespaces": [],
              "import_failures": {}, "test_imports_apart": {}, "extensions": {}, "missing_libraries": {}, "missing_versions": {},
              "test": {"ran": False, "returncode": None, "output_tail": ""}, "reasons": [], "timings": {}}
    started = time.time()
    try:
        check(spec, result, envs)
    except GuestError as exc:
        result["reasons"].append(str(exc))
    except Exception as exc:  # a bug here must still leave a result the host can read
        import traceback
        traceback.print_exc()
        result["reasons"].append("check.py crashed: %s: %s" % (type(exc).__name__, one_line(str(exc))))
    result["ok"] = not result["reasons"]
    result["timings"]["total"] = round(time.time() - started, 3)
    write_json(os.path.join(out, "check-result.json"), result)
    say("check %s after %.1f s" % ("ok" if result["ok"] else "FAILED", time.time() - started))
    for reason in result["reasons"]:
        say("  - " + reason)
    return result["ok"]


def prepare(spec):
    """What every test of the platform starts from, made once (see prepare_tree): the fresh
    environment (WORK/env) and pip unpacked and byte-compiled (WORK/pip-tool), unpacked by each
    test guest at the same path (unpack_tree), so a cell does not pay again for a virtualenv
    (2-7 s on Python 2.7) or for pip compiling itself (1-5 s per install)."""

    def make(work):
        env = make_env(spec, work)
        keys = {}
        if spec.get("pip"):
            pip_dir = fresh_dir(os.path.join(work, "pip-tool"))
            unpack(spec["pip"], pip_dir)
            code, output = capture([env.python, "-m", "compileall", "-q", pip_dir])
            if code != 0:
                raise GuestError("compiling pip failed (%s): %s" % (describe_exit(code), one_line(tail(output, 2))))
            # Relative to WORK: each test guest unpacks the tree into its own (the vagrant backend
            # gives each cell a folder of its own, so the path made here is not the path used).
            keys["pip_dir"] = "pip-tool"
        return "%s (made once for the platform's tests, unused until now)" % env.how, keys

    return prepare_tree(spec, ("env", "pip-tool"), make)


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: check.py SPEC.json\n")
        return 2
    spec = load_spec(argv[1])
    if spec.get("prepare"):
        return prepare(spec)
    if spec.get("prepared_tar"):
        unpack_tree(spec, drop=("prepared_env", "pip_dir"))
    items = items_of(spec)
    envs = Envs(spec, spec["work"], keep=len(items) > 1)
    ok = True
    for item in items:
        one = dict(spec)
        one.update(item)
        say("== %s" % os.path.basename(one["artifact"]))
        ok = check_one(one, envs) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))

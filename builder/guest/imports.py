# What an application imports, and whether each import works here.
#
#   PYTHON imports.py scan TREE [--exclude GLOB]...   every import statement of TREE's .py files
#   PYTHON imports.py try SPEC...                     import each SPEC ("a.b", or "x:y": from x import y)
#   PYTHON imports.py check TREE [--exclude GLOB]...  scan, then try every import not the tree's own
#
# Each prints one JSON document (or writes it to --out FILE). scan exits 1 if a file does not parse;
# try and check exit 1 if a required import fails. The scan parses with the running interpreter's
# own ast, so run it with the target's Python: Python 2 code must parse under 2.7.
#
# A plain script: builder runs it in a platform's runtime image, and deploy runs it on servers
# (beside or without the other guest scripts), so it imports nothing of ours. Runs unchanged on
# Python 2.6, 2.7 and 3.6+ (see _common.py for what that rules out). It is longer than a host
# module may be because a server gets this one file alone.
from __future__ import absolute_import, print_function

import ast
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

PY2 = sys.version_info[0] == 2
IMPORT_TIMEOUT = 300  # seconds for one import; a hung import is reported, not waited on
SKIP_DIRS = ("__pycache__", "node_modules", "site-packages", "dist-packages")
STATEMENT_FIELDS = ("body", "handlers", "orelse", "finalbody", "cases")  # in source order
# Build-time code, not the application's: not scanned unless named (its setuptools import would
# fail in every runtime environment). Patterns match paths relative to the tree.
DEFAULT_EXCLUDES = ("setup.py",)
# Handlers that catch a failed import: the try body's imports are optional.
IMPORT_ERRORS = ("ImportError", "ModuleNotFoundError", "Exception", "BaseException")
# Names in an `if` test that make its imports depend on the interpreter or the OS
# (`if sys.version_info[0] == 2:`, `if PY2:`, `if sys.platform == "win32":`, `if TYPE_CHECKING:`):
# such imports are tried and reported, but are not failures where their branch does not run.
CONDITION = re.compile(r"^(PY\d*|PYPY|IS_PY\d*|IS_WINDOWS|WINDOWS|WIN32|TYPE_CHECKING|version_info|hexversion"
                       r"|platform|maxsize|implementation)$")


class Found(object):
    """The tree's layout: which module names it provides, found once before any file is read."""

    def __init__(self, root):
        self.root = os.path.abspath(root)
        self.files = []  # .py files, relative to root, sorted
        self.extensions = []  # compiled modules, as the .py path they stand for
        self.packages = set()  # folders with an __init__.py ("" is the tree itself)
        self.modules = {}  # dotted name -> relative path, for every module the tree provides
        self.prefixes = set()  # every dotted name above a module ("a" and "a.b" for a.b.c)
        self.namespaces = set()  # packages whose __init__.py only extends __path__ (pkgutil, pkg_resources)
        self._walk()

    def _walk(self):
        for folder, dirs, files in os.walk(self.root):
            dirs[:] = sorted([d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS
                              and not os.path.isfile(os.path.join(folder, d, "pyvenv.cfg"))])
            rel = os.path.relpath(folder, self.root)
            rel = "" if rel == "." else rel.replace(os.sep, "/")
            if "__init__.py" in files:
                self.packages.add(rel)
                if extends_path(os.path.join(folder, "__init__.py")):
                    self.namespaces.add(rel)
            for name in sorted(files):
                if name.endswith(".py"):
                    self.files.append(join(rel, name))
                elif name.endswith((".so", ".pyd")):  # extension modules built in place
                    self.extensions.append(join(rel, name.split(".")[0] + ".py"))
        self.files.sort()
        for path in self.files + self.extensions:
            for name in [self.module_name(path)] + self.namespace_names(path):
                if name:
                    self.modules.setdefault(name, path)
                    parts = name.split(".")
                    for i in range(1, len(parts)):
                        self.prefixes.add(".".join(parts[:i]))
        # The namespace packages as dotted names (the folders were relative paths).
        self.namespaces = set([self.module_name(join(p, "__init__.py")) for p in self.namespaces]) - set([None])

    def source_root(self, path):
        """The sys.path entry a file is imported from: its first ancestor folder that is no
        package. Any such folder counts (the tree itself, src/, scripts/: a script's own folder
        is sys.path[0] when it runs). None when the tree itself is a package."""
        folder = parent(path)
        while folder and folder in self.packages:
            folder = parent(folder)
        if folder == "" and "" in self.packages:
            return None
        return folder

    def module_name(self, path):
        """The dotted name of a .py file of the tree, as imported from its source root."""
        root = self.source_root(path)
        if root is None:
            parts = path[:-3].split("/")
            parts.insert(0, os.path.basename(self.root))
        else:
            parts = path[len(root) + 1 if root else 0:-3].split("/")
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not parts or not all(re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", p) for p in parts):
            return None
        return ".".join(parts)

    def namespace_names(self, path):
        """On Python 3.3+ (PEP 420) a folder without __init__.py above a source root may be a
        namespace package rather than a folder on sys.path: the tree's zope/myapp/views.py is
        myapp.views from zope/ and zope.myapp.views from the tree. The names from each folder
        further up, up to the tree itself."""
        if sys.version_info < (3, 3):
            return []
        names = []
        folder = self.source_root(path)
        while folder:
            folder = parent(folder)
            if folder in self.packages:
                break
            parts = path[len(folder) + 1 if folder else 0:-3].split("/")
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if parts and all(re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", p) for p in parts):
                names.append(".".join(parts))
        return names

    def provides(self, dotted):
        """Does the tree provide this module (or a package above it, for a namespace package)?"""
        # A folder of modules counts: a package, or a namespace package on Python 3.
        return dotted in self.modules or dotted in self.prefixes

    def owns(self, dotted):
        """Is the import the application's own? Its top-level name is the tree's, and not a
        namespace package the tree shares with installed distributions (zope/ holding only the
        application's zope.myapp: zope.interface is not the application's); below a namespace,
        the next name decides."""
        parts = dotted.split(".")
        for i in range(len(parts)):
            name = ".".join(parts[:i + 1])
            if name in self.modules and name not in self.namespaces:
                return True
            if not self.provides(name):
                return False
        return True  # the namespace itself, which the tree provides (a portion of)


def extends_path(init):
    """Does a package's __init__.py make it a namespace package (pkgutil.extend_path or
    pkg_resources.declare_namespace)? Only the first 4 KiB are read: such a file is short."""
    try:
        handle = open(init, "rb")
    except (IOError, OSError):
        return False
    try:
        head = handle.read(4096)
    finally:
        handle.close()
    return b"extend_path(" in head or b"declare_namespace(" in head


def join(folder, name):
    return folder + "/" + name if folder else name


def parent(path):
    return path.rsplit("/", 1)[0] if "/" in path else ""


# --- scan --------------------------------------------------------------------------------------

def parse(source, filename):
    """The module's ast, parsed by this interpreter (coding cookies honoured: source is bytes),
    without our own __future__ flags (dont_inherit): `print "x"` must parse under Python 2.
    Python 2.6's compile() wants \n line ends and a final newline; the file's lines stay the same."""
    source = source.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if not source.endswith(b"\n"):
        source += b"\n"
    return compile(source, filename, "exec", ast.PyCF_ONLY_AST, True)


def display(path):
    """A path as JSON can carry it: Python 2's json cannot encode bytes that are not UTF-8."""
    if PY2 and isinstance(path, bytes):
        return path.decode("utf-8", "replace")
    return path


def catches_import_error(handlers):
    for handler in handlers:
        kind = getattr(handler, "type", None)
        if kind is None:
            return True  # a bare except
        kinds = kind.elts if isinstance(kind, ast.Tuple) else [kind]
        for one in kinds:
            name = getattr(one, "id", None) or getattr(one, "attr", None)
            if name in IMPORT_ERRORS:
                return True
    return False


def is_feature_test(node):
    """hasattr(module, NAME), or getattr(module, NAME, DEFAULT): a test of what a module offers,
    which picks a branch per interpreter as a version test does. getattr without a default is a
    plain attribute read (it raises if the name is missing), no test."""
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        return False
    wanted = {"hasattr": 2, "getattr": 3}.get(node.func.id)
    return wanted is not None and len(node.args) == wanted and isinstance(node.args[0], (ast.Name, ast.Attribute))


def is_condition(test):
    for node in ast.walk(test):
        if is_feature_test(node):
            return True
        name = getattr(node, "id", None) if isinstance(node, ast.Name) else getattr(node, "attr", None)
        if name and CONDITION.match(name):
            return True
        if isinstance(node, ast.Attribute) and node.attr == "name" and getattr(node.value, "id", None) == "os":
            return True
    return False


def statement(node, alias):
    if isinstance(node, ast.Import):
        text = "import " + alias.name
    else:
        text = "from %s%s import %s" % ("." * (node.level or 0), node.module or "", alias.name)
    if alias.asname:
        text += " as " + alias.asname
    return text


class Scanner(object):
    def __init__(self, found, excludes=DEFAULT_EXCLUDES):
        self.found = found
        self.excludes = list(excludes)
        self.result = {"python": "%d.%d.%d" % tuple(sys.version_info[:3]), "root": found.root,
                       "files": len(found.files), "imports": [], "optional": [], "own": [], "future": [],
                       "problems": [], "excluded": []}

    def scan(self):
        for path in self.found.files:
            if excluded(path, self.excludes):
                self.result["excluded"].append(display(path))
            else:
                self.scan_file(path)
        return self.result

    def problem(self, path, line, error):
        self.result["problems"].append({"file": path, "line": line, "error": error})

    def scan_file(self, path):
        handle = open(os.path.join(self.found.root, path), "rb")
        try:
            source = handle.read()
        finally:
            handle.close()
        try:
            tree = parse(source, path)
        except SyntaxError as exc:
            self.problem(display(path), exc.lineno or 0, "%s: %s" % (type(exc).__name__, exc.msg))
            return
        except (TypeError, ValueError) as exc:  # null bytes, on some versions
            self.problem(display(path), 0, "SyntaxError: %s" % exc)
            return
        self.path = display(path)
        self.module = self.found.module_name(path)
        self.is_package = path.endswith("/__init__.py") or path == "__init__.py"
        # Python 2 without absolute_import tries `import x` inside the file's own package first.
        self.implicit_relative = PY2 and not any(
            isinstance(n, ast.ImportFrom) and n.module == "__future__" and
            "absolute_import" in [a.name for a in n.names] for n in tree.body)
        for node in tree.body:
            self.visit(node, None)

    def visit(self, node, guard):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            self.record(node, guard)
            return
        handlers = getattr(node, "handlers", None)
        if handlers and catches_import_error(handlers):
            # try/except ImportError: the body's imports may fail by design, and the else
            # branch runs only when they did not; the handlers' imports (the fallback) and the
            # finally's run either way, so they are required.
            here = guard or "try/except ImportError at line %d" % node.lineno
            for child in list(node.body) + list(getattr(node, "orelse", [])):
                self.visit(child, here)
            for child in list(handlers) + list(getattr(node, "finalbody", [])):
                self.visit(child, guard)
            return
        if isinstance(node, ast.If) and is_condition(node.test):
            here = guard or "condition at line %d" % node.lineno
            for child in node.body + node.orelse:
                self.visit(child, here)
            return
        # Imports are statements: only the statement lists of a node can hold one (a function's
        # or class's body, an if's or loop's branches, a try's handlers, a match's cases), so
        # expressions are never walked: that is most of a module's nodes.
        for field in STATEMENT_FIELDS:
            children = getattr(node, field, None)
            if isinstance(children, list):
                for child in children:
                    self.visit(child, guard)

    def package(self):
        """The dotted package a relative import starts from, or None outside any package."""
        if not self.module or (not self.is_package and "." not in self.module):
            return None
        return self.module if self.is_package else self.module.rsplit(".", 1)[0]

    def resolve(self, module, level, line):
        """(absolute module, own) of an import; None after reporting a relative import that
        cannot work."""
        if not level:
            package = self.package()
            if self.implicit_relative and package and self.found.provides(package + "." + module):
                return package + "." + module, True
            return module, self.found.owns(module)
        package = self.package()
        if package is None:
            self.problem(self.path, line, "ImportError: relative import in a file that is not in a package")
            return None
        parts = package.split(".")
        if level - 1 >= len(parts):
            self.problem(self.path, line, "ImportError: relative import beyond the top-level package")
            return None
        base = ".".join(parts[:len(parts) - (level - 1)])
        return (base + "." + module if module else base), True

    def record(self, node, guard):
        if isinstance(node, ast.ImportFrom) and node.module == "__future__" and not node.level:
            # Compiler directives, not imports: an unknown feature is already a SyntaxError.
            for alias in node.names:
                self.result["future"].append({"file": self.path, "line": node.lineno, "feature": alias.name})
            return
        if isinstance(node, ast.ImportFrom):
            resolved = self.resolve(node.module, node.level or 0, node.lineno)
            if resolved is None:
                return
            targets = [(resolved, alias, None if alias.name == "*" else alias.name) for alias in node.names]
        else:
            targets = [(self.resolve(alias.name, 0, node.lineno), alias, None) for alias in node.names]
        for (module, own), alias, name in targets:
            entry = {"file": self.path, "line": node.lineno, "statement": statement(node, alias),
                     "module": module, "name": name, "spec": module + (":" + name if name else "")}
            if own and guard and not self.found.provides(module):
                # An own module the tree lacks, imported where its absence is handled (an
                # optional compiled speedup built elsewhere): optional, like anyone else's.
                entry["guard"] = guard
                self.result["optional"].append(entry)
            elif own:
                # An own module the tree lacks fails wherever the application runs. (In
                # `from pkg import name`, name may be an attribute: only pkg must exist.)
                if not self.found.provides(module):
                    self.problem(self.path, node.lineno, "ImportError: %s: the application has no module %s"
                                 % (entry["statement"], module))
                self.result["own"].append(entry)
            elif guard:
                entry["guard"] = guard
                self.result["optional"].append(entry)
            else:
                self.result["imports"].append(entry)


def excluded(path, patterns):
    """Does a pattern match the file or one of the folders it is in?"""
    parts = path.split("/")
    for i in range(1, len(parts) + 1):
        for pattern in patterns:
            if fnmatch.fnmatchcase("/".join(parts[:i]), pattern.strip("/")):
                return True
    return False


def scan(tree, excludes=DEFAULT_EXCLUDES):
    if not os.path.isdir(tree):
        raise UsageError("%s is not a folder" % tree)
    return Scanner(Found(tree), excludes).scan()


# --- try ---------------------------------------------------------------------------------------

# The importing child, given as -c code and run in an empty folder, so that neither this
# script's folder nor the caller's is on its sys.path. It appends one JSON line when it starts a
# spec and one when it is done, flushed, so if an extension kills the interpreter the parent
# knows which import did.
CHILD = r"""
import json, os, sys
specs = json.load(open(sys.argv[1]))
results = open(sys.argv[2], 'a')

def text(value):
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

def missing(error, full, last):
    # Is this ImportError about `full` itself not existing (rather than something it imports)?
    if getattr(error, 'name', None) is not None:
        return error.name == full
    message = text(error)
    return message in ('No module named ' + last, 'No module named ' + full)

def attempt(module, name):
    __import__(module)
    found = sys.modules[module]
    if name is None or hasattr(found, name):
        return
    full = module + '.' + name
    try:
        __import__(full)
    except ImportError:
        if not missing(sys.exc_info()[1], full, name):
            raise
    if not hasattr(found, name) and full not in sys.modules:
        raise ImportError("cannot import name '%s' from '%s'" % (name, module))

for spec in specs:
    emit({'start': spec})
    module, _, name = spec.partition(':')
    record = {'spec': spec, 'module': module, 'name': name or None}
    try:
        attempt(module, name or None)
        record['ok'] = True
    except BaseException:
        error = sys.exc_info()[1]
        record['ok'] = False
        record['error_type'] = type(error).__name__
        record['error'] = text(error)
    emit(record)

results.close()
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
"""


def run_child(argv, cwd, progress, timeout):
    """Run the importing child; returncode is None if one import outlived timeout (the
    progress file did not grow for that long). Output goes to a temporary file, not a pipe, so
    a chatty import never blocks on it."""
    sink = tempfile.TemporaryFile()
    try:
        proc = subprocess.Popen(argv, cwd=cwd, stdin=open(os.devnull, "rb"), stdout=sink, stderr=subprocess.STDOUT)
        size, deadline = -1, time.time() + timeout
        while proc.poll() is None:
            now = os.path.getsize(progress)
            if now != size:
                size, deadline = now, time.time() + timeout
            elif time.time() > deadline:
                proc.kill()
                proc.wait()
                return None
            time.sleep(0.02)
        return proc.returncode
    finally:
        sink.close()


def try_imports(specs, timeout=None):
    """Import each spec in a child of this interpreter; one that kills or hangs its child is
    charged with it and a new child goes on with the rest."""
    timeout = timeout or IMPORT_TIMEOUT
    results = {}
    remaining = unique(specs)
    work = tempfile.mkdtemp(prefix="imports-")
    try:
        empty = os.path.join(work, "empty")
        os.mkdir(empty)
        listing = os.path.join(work, "specs.json")
        progress = os.path.join(work, "progress")
        while remaining:
            write_text(listing, json.dumps(remaining))
            write_text(progress, "")
            code = run_child([sys.executable, "-c", CHILD, listing, progress], empty, progress, timeout)
            started = None
            for line in read_text(progress).splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a crash
                if "start" in record:
                    started = record["start"]
                else:
                    results[record["spec"]] = record
                    started = None
            left = [s for s in remaining if s not in results]
            if left:
                culprit = started or left[0]
                if code is None:
                    why = "its import did not finish within %d s" % timeout
                elif code < 0:
                    why = "the interpreter died while importing it (signal %d)" % -code
                else:
                    why = "the interpreter exited while importing it (exit %d)" % code
                module, _, name = culprit.partition(":")
                results[culprit] = {"spec": culprit, "module": module, "name": name or None, "ok": False,
                                    "error_type": "Crash", "error": why}
            remaining = [s for s in remaining if s not in results]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [results[s] for s in unique(specs)]


def unique(items):
    seen = set()
    out = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def check(tree, timeout=None, excludes=DEFAULT_EXCLUDES):
    """scan + try: every import the tree's own modules do not satisfy, tried here."""
    found = scan(tree, excludes)
    specs = [e["spec"] for e in found["imports"] + found["optional"]]
    tried = dict([(r["spec"], r) for r in try_imports(specs, timeout=timeout)])
    failures = []
    for entry in found["imports"]:
        if not tried[entry["spec"]]["ok"]:
            failures.append(dict(entry, error="%s: %s" % (tried[entry["spec"]]["error_type"],
                                                          tried[entry["spec"]]["error"])))
    for problem in found["problems"]:
        failures.append(dict(problem, statement=None, spec=None))
    missing_optional = [dict(e, error=tried[e["spec"]]["error"]) for e in found["optional"]
                        if not tried[e["spec"]]["ok"]]
    return {"scan": found, "tried": [tried[s] for s in unique(specs)], "failures": failures,
            "optional_missing": missing_optional, "ok": not failures}


# --- command line -------------------------------------------------------------------------------

class UsageError(Exception):
    pass


def read_text(path):
    handle = open(path)
    try:
        return handle.read()
    finally:
        handle.close()


def write_text(path, text):
    handle = open(path, "w")
    try:
        handle.write(text)
    finally:
        handle.close()


def write_err(line):
    """A line to stderr, whatever it holds: on Python 2 a file or module name beyond ASCII
    (an accented name) comes back from json as unicode, which a pipe's stderr cannot take."""
    if PY2 and isinstance(line, unicode):  # noqa: F821 (Python 2 only)
        line = line.encode("utf-8", "replace")
    try:
        sys.stderr.write(line)
    except UnicodeEncodeError:
        sys.stderr.write(line.encode("ascii", "backslashreplace").decode("ascii"))


def emit(data, out):
    text = json.dumps(data, indent=2, sort_keys=True)
    if out:
        write_text(out + ".tmp", text + "\n")
        os.rename(out + ".tmp", out)
    else:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


USAGE = """usage: imports.py scan TREE [--out FILE] [--exclude GLOB]... [--no-default-excludes]
       imports.py try SPEC... [--out FILE] [--timeout SECONDS]   (SPEC: module, or module:name)
       imports.py check TREE [--out FILE] [--timeout SECONDS] [--exclude GLOB]... [--no-default-excludes]
"""


def options(args):
    """(positional arguments, --out, --timeout, excludes) from argv; Python 2.6 has no argparse."""
    rest, out, timeout, excludes = [], None, None, list(DEFAULT_EXCLUDES)
    args = list(args)
    while args:
        arg = args.pop(0)
        if arg == "--no-default-excludes":
            excludes = [e for e in excludes if e not in DEFAULT_EXCLUDES]
        elif arg in ("--out", "--timeout", "--exclude"):
            if not args:
                raise UsageError("%s needs a value" % arg)
            value = args.pop(0)
            if arg == "--out":
                out = value
            elif arg == "--exclude":
                excludes.append(value)
            else:
                try:
                    timeout = float(value)
                except ValueError:
                    raise UsageError("--timeout needs a number of seconds, not %r" % value)
        elif arg.startswith("--"):
            raise UsageError("unknown option %s" % arg)
        else:
            rest.append(arg)
    return rest, out, timeout, excludes


def main(argv):
    try:
        if len(argv) < 2 or argv[1] not in ("scan", "try", "check"):
            raise UsageError("a command is needed: scan, try or check")
        command = argv[1]
        rest, out, timeout, excludes = options(argv[2:])
        if command == "try":
            if not rest:
                raise UsageError("try needs at least one module")
            results = try_imports(rest, timeout=timeout)
            ok = all([r["ok"] for r in results])
            emit({"python": "%d.%d.%d" % tuple(sys.version_info[:3]), "executable": sys.executable,
                  "results": results, "ok": ok}, out)
            return 0 if ok else 1
        if len(rest) != 1:
            raise UsageError("%s needs one folder" % command)
        if command == "scan":
            found = scan(rest[0], excludes)
            emit(found, out)
            return 1 if found["problems"] else 0
        result = check(rest[0], timeout=timeout, excludes=excludes)
        emit(result, out)
        for failure in result["failures"]:
            write_err("%s:%s: %s\n" % (failure["file"], failure["line"], failure["error"]))
        return 0 if result["ok"] else 1
    except UsageError as exc:
        sys.stderr.write("imports.py: %s\n%s" % (exc, USAGE))
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

# Build one sdist into eggs and/or wheels inside a build guest (compilers, no network).
#
#   PYTHON build.py SPEC.json
#
# Writes OUT/build-result.json and exits 0 only if every requested format gave exactly one
# artifact. Build output passes through to stdout: the host keeps it as the cell's log.
# Runs unchanged on Python 2.6, 2.7 and 3.6+ (see _common.py for what that rules out).
from __future__ import absolute_import, print_function

import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (GuestError, environ, fresh_dir, load_spec, make_virtualenv, one_line,  # noqa: E402
                     native_text, prepare_tree, python_version, run_tee, say, unpack, unpack_tree, write_json, capture,
                     describe_exit)

# Run setup.py as __main__ with setuptools imported first, so a plain-distutils setup.py still
# gets bdist_egg and bdist_wheel (the same trick pip uses). argv after -c becomes setup.py's.
SHIM = (
    "# setuptools shim: run setup.py with setuptools imported first\n"
    "import sys, tokenize\n"
    "import setuptools\n"
    "sys.argv[0] = __file__ = 'setup.py'\n"
    "f = getattr(tokenize, 'open', open)(__file__)\n"
    "code = f.read().replace('\\r\\n', '\\n')\n"
    "f.close()\n"
    "exec(compile(code, __file__, 'exec'))\n"
)

SUFFIX = {"egg": ".egg", "wheel": ".whl"}
CPU = {}  # format -> CPU seconds of its build command, for build-result.json


def find_source_root(folder, archive_name):
    """The sdist must hold exactly one top-level folder with a setup.py in it."""
    entries = sorted(os.listdir(folder))
    dirs = [e for e in entries if os.path.isdir(os.path.join(folder, e))]
    if len(entries) != 1 or len(dirs) != 1:
        raise GuestError("%s should hold exactly one top-level folder; it holds: %s"
                         % (archive_name, ", ".join(entries) or "nothing"))
    root = os.path.join(folder, dirs[0])
    if not os.path.isfile(os.path.join(root, "setup.py")):
        raise GuestError("%s/%s has no setup.py: builder builds setup.py-based sdists" % (archive_name, dirs[0]))
    return root


def unpack_tools(wheels, dest):
    """Build-time tools are pure-Python wheels: unzipped side by side into one folder, their
    .dist-info included, so pkg_resources sees them as installed and setup_requires is met
    without setuptools reaching for an index."""
    fresh_dir(dest)
    for wheel in wheels:
        if not wheel.endswith(".whl"):
            raise GuestError("build tool %s is not a wheel" % os.path.basename(wheel))
        unpack(wheel, dest)
    return dest


def build_env(spec, work, tools):
    home = os.path.join(work, "home")
    cache = os.path.join(work, "egg-cache")
    for folder in (home, cache):
        if not os.path.isdir(folder):
            os.makedirs(folder)
    extra = {
        # HOME may be read-only in the guest; setuptools and pip write caches under it.
        "HOME": home,
        "PYTHON_EGG_CACHE": cache,
        "PIP_NO_INDEX": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
    }
    if tools:
        extra["PYTHONPATH"] = tools
    for name, value in (spec.get("env") or {}).items():
        extra[name] = str(value)
    # The host sets PYTHONDONTWRITEBYTECODE for its own reasons; eggs carry .pyc as they always
    # have, so the build must byte-compile. Index settings must not leak into an offline build.
    return environ(extra, drop=("PYTHONDONTWRITEBYTECODE", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL",
                                "PIP_FIND_LINKS", "PYTHONPATH"))


def has_pip(python, env):
    # Importing the package is enough to choose the frontend and costs a tenth of `pip --version`.
    code, _ = capture([python, "-c", "import pip"], env=env)
    return code == 0


def build_command(fmt, python, src, dist, setup_args, use_pip):
    """argv for one format. Wheels go through `pip wheel` where it honours setup_args."""
    if fmt == "egg":
        return [python, "-c", SHIM] + setup_args + ["bdist_egg", "--dist-dir", dist]
    # pip 23.0.1 (Debian 12) passes --global-option to a legacy setup.py, but for a project with
    # a pyproject.toml (any, so PEP 517) it prints "Ignoring --global-option" and builds without
    # them: PyYAML 5.4.1 would silently lose --with-libyaml. Those go through setup.py directly.
    pep517 = os.path.isfile(os.path.join(src, "pyproject.toml"))
    if use_pip and not (setup_args and pep517):
        argv = [python, "-m", "pip", "wheel", "-v", "--no-build-isolation", "--no-index", "--no-deps",
                "--no-cache-dir", "-w", dist]
        return argv + ["--global-option=%s" % a for a in setup_args] + [src]
    return [python, "-c", SHIM] + setup_args + ["bdist_wheel", "--dist-dir", dist]


# Lines that only say that something below failed; the cause is usually an earlier error line.
GENERIC_ERRORS = ("failed building wheel", "failed to build", "subprocess-exited-with-error",
                  "failed cleaning build dir")


def is_generic(line):
    line = line.strip().lower()
    return line.startswith("error: command ") or [g for g in GENERIC_ERRORS if g in line] != []


def last_exception(lines):
    """(index, line) of the exception line ending the last Python traceback in `lines`, or None."""
    starts = [n for n, line in enumerate(lines) if line.strip() == "Traceback (most recent call last):"]
    if not starts:
        return None
    for at in range(starts[-1] + 1, len(lines)):
        if lines[at].strip() and not lines[at][:1].isspace():
            return at, lines[at].strip()
    return None


def pick_error(lines):
    """The line of a failed build most worth showing: the first specific error line of the
    output's tail (gcc's "yaml/_yaml.c: No such file" rather than distutils' "command 'gcc'
    failed"), else the first generic one, else the last line mentioning an error, else the
    last line. When the build died of a Python exception (a traceback with no specific error
    line after it), its exception line is the one, of the last traceback: in a chain ("During
    handling of the above exception, another exception occurred") the first is what the code
    tried, the last is why it gave up."""
    found = last_exception(lines)
    if found is not None:
        at, raised = found
        later = [line for line in lines[at + 1:] if "error:" in line.lower() and not is_generic(line)]
        if later:  # the build went on past the traceback (a fallback) and failed after it
            return one_line(later[0], 200)
        if not is_generic(raised):
            return one_line(raised, 200)
    errors = [line for line in lines if "error:" in line.lower()]
    for line in [e for e in errors if not is_generic(e)] + errors:
        return one_line(line, 200)
    for line in reversed(lines):
        if "error" in line.lower():
            return one_line(line, 200)
    for line in reversed(lines):
        if line.strip():
            return one_line(line, 200)
    return ""


def artifact_version(filename):
    """Eggs and wheels both put the version second: NAME-VERSION-....egg/.whl."""
    parts = filename.split("-")
    return parts[1] if len(parts) > 2 else None


def same_version(a, b):
    """Loose on spelling (1.0rc1, 1.0.rc1, 1.0-rc1), strict on the numbers."""
    return re.sub(r"[^a-z0-9]", "", a.lower()) == re.sub(r"[^a-z0-9]", "", b.lower())


def build_format(fmt, python, src, work, out, spec, env, use_pip):
    dist = fresh_dir(os.path.join(work, "dist-" + fmt))
    argv = build_command(fmt, python, src, dist, list(spec.get("setup_args") or []), use_pip)
    started = time.time()
    before = os.times()
    code, last = run_tee(argv, cwd=src, env=env)
    after = os.times()
    # CPU time of the compile (the build command and its compilers), beside its wall time: what
    # a benchmark needs to say how close a run came to the machine's limit.
    cpu = (after[2] - before[2]) + (after[3] - before[3])
    say("%s build: %s after %.1f s (%.1f s CPU)" % (fmt, describe_exit(code), time.time() - started, cpu))
    CPU[fmt] = round(cpu, 3)
    if code != 0:
        raise GuestError("%s build failed (%s): %s" % (fmt, describe_exit(code), pick_error(last)))
    made = sorted(f for f in os.listdir(dist) if f.endswith(SUFFIX[fmt]))
    if len(made) != 1:
        raise GuestError("%s build made %d %s files (%s), expected exactly one"
                         % (fmt, len(made), SUFFIX[fmt], ", ".join(made) or "none"))
    # A setup.py that gets its version from a plugin it cannot find builds anyway, as 0.0.0
    # (python-dateutil without setuptools_scm under `pip wheel --no-build-isolation`).
    version = artifact_version(made[0])
    if spec.get("version") and version and not same_version(version, spec["version"]):
        raise GuestError("%s build made %s, version %s, but the sdist is version %s (a build-time requirement "
                         "such as setuptools_scm missing from build_requires?)"
                         % (fmt, made[0], version, spec["version"]))
    shutil.copy2(os.path.join(dist, made[0]), os.path.join(out, made[0]))
    return made[0]


def build_python(spec, work):
    """The Python that runs setup.py: the guest's own, or on Python 2 (no setuptools there) a
    virtualenv from the platform's verified virtualenv tool at WORK/venv: the platform's prepared
    one, unpacked from its tar before anything else ran (see prepare), else one made here."""
    if not spec.get("virtualenv"):
        return sys.executable
    dest = os.path.join(work, "venv")
    python = os.path.join(dest, "bin", "python")
    if spec.get("prepared_env") and os.path.isfile(python):
        say("build environment: %s" % spec["prepared_env"])
        return python
    return make_virtualenv(spec["virtualenv"], dest, work)


def prepare(spec):
    """The virtualenv every build of the platform starts from (WORK/venv), made once (see
    prepare_tree): each build guest unpacks its own copy at the same path, so a cell does not pay
    again for a virtualenv (2-4 s on Python 2.7), and what one setup.py does to it, no other sees."""

    def make(work):
        make_virtualenv(spec["virtualenv"], os.path.join(work, "venv"), work)
        return "virtualenv (made once for the platform's builds, unused until now)", {}

    return prepare_tree(spec, ("venv",), make)


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: build.py SPEC.json\n")
        return 2
    spec = load_spec(argv[1])
    if spec.get("prepare"):
        return prepare(spec)
    out = spec["out"]
    if not os.path.isdir(out):
        os.makedirs(out)
    result = {"ok": False, "python": python_version(), "artifacts": [], "error": None, "timings": {}}
    timings = result["timings"]
    mark = [time.time()]

    def lap(name):
        now = time.time()
        timings[name] = round(now - mark[0], 3)
        mark[0] = now
    errors = []
    try:
        work = spec["work"]
        if spec.get("prepared_tar"):
            unpack_tree(spec, drop=("prepared_env",))  # into an empty WORK, before anything else
            lap("prepared")
        if not os.path.isdir(work):
            os.makedirs(work)
        sdist = spec["sdist"]
        say("unpacking %s" % os.path.basename(sdist))
        unpacked = fresh_dir(os.path.join(work, "src"))
        unpack(sdist, unpacked)
        src = find_source_root(unpacked, os.path.basename(sdist))
        tools = None
        if spec.get("build_requires"):
            tools = unpack_tools(spec["build_requires"], os.path.join(work, "tools"))
        env = build_env(spec, work, tools)
        lap("unpack")
        python = build_python(spec, work)
        if spec.get("virtualenv"):
            lap("virtualenv")
        use_pip = sys.version_info[0] >= 3 and has_pip(python, env)
        for fmt in spec["formats"]:
            if fmt not in SUFFIX:
                errors.append("unknown format %r (expected egg or wheel)" % fmt)
                continue
            try:
                result["artifacts"].append({"format": fmt, "filename": build_format(
                    fmt, python, src, work, out, spec, env, use_pip)})
            except GuestError as exc:
                errors.append(native_text(exc))  # one format failing does not stop the other
            lap(fmt)
    except GuestError as exc:
        errors.append(native_text(exc))
    except Exception as exc:  # a bug here must still leave a result the host can read
        errors.append("build.py crashed: %s: %s" % (type(exc).__name__, one_line(native_text(exc))))
        import traceback
        traceback.print_exc()
    result["ok"] = not errors
    result["error"] = "; ".join(errors) or None
    result["cpu"] = CPU
    write_json(os.path.join(out, "build-result.json"), result)
    say("build %s%s" % ("ok" if result["ok"] else "FAILED: ", result["error"] or ""))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))

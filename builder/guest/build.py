# Build one sdist into eggs and/or wheels inside a build guest (compilers, no network).
#
#   PYTHON build.py SPEC.json
#
# Writes OUT/build-result.json and exits 0 only if every requested format gave exactly one
# artifact. Build output passes through to stdout: the host keeps it as the cell's log.
# Runs unchanged on Python 2.6, 2.7 and 3.6+ (see _common.py for what that rules out).
from __future__ import absolute_import, print_function

import json
import os
import re
import shutil
import sys
import time
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (GuestError, environ, fresh_dir, load_spec, make_virtualenv, one_line,  # noqa: E402
                     native_text, prepare_tree, python_version, run_tee, say, unpack, unpack_tree, write_json, capture,
                     describe_exit)
import _reproducible as repro  # noqa: E402

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
COMMANDS = {}  # format -> the build command's argv, for build-result.json (and the provenance)


def find_source_root(folder, archive_name):
    """The sdist must hold exactly one top-level folder with a setup.py or a pyproject.toml in it."""
    entries = sorted(os.listdir(folder))
    dirs = [e for e in entries if os.path.isdir(os.path.join(folder, e))]
    if len(entries) != 1 or len(dirs) != 1:
        raise GuestError("%s should hold exactly one top-level folder; it holds: %s"
                         % (archive_name, ", ".join(entries) or "nothing"))
    root = os.path.join(folder, dirs[0])
    if not [f for f in ("setup.py", "pyproject.toml") if os.path.isfile(os.path.join(root, f))]:
        raise GuestError("%s/%s has neither a setup.py nor a pyproject.toml: it is not a Python sdist"
                         % (archive_name, dirs[0]))
    return root


def build_system(src):
    """(backend, requires) of the sdist's pyproject.toml [build-system] (PEP 517/518), or None
    where it has none or this Python cannot read TOML (before 3.11 without a TOML reader: only
    setup.py sdists are built there, as always)."""
    path = os.path.join(src, "pyproject.toml")
    if not os.path.isfile(path):
        return None
    try:
        import tomllib as toml
    except ImportError:
        try:
            from pip._vendor import tomli as toml
        except ImportError:
            return None
    handle = open(path, "rb")
    try:
        try:
            data = toml.load(handle)
        except ValueError as exc:  # tomllib.TOMLDecodeError is a ValueError
            raise GuestError("pyproject.toml of the sdist is not valid TOML: %s" % one_line(str(exc)))
    finally:
        handle.close()
    table = data.get("build-system") or {}
    # PEP 517: no build-backend means setuptools' legacy backend, which runs setup.py.
    return table.get("build-backend") or "setuptools.build_meta:__legacy__", list(table.get("requires") or [])


# Which of the backend's requirements the build environment lacks, asked of the build Python
# itself (its own sys.path, with the pinned tools on PYTHONPATH), with the packaging that pip
# vendors. Prints a JSON list of "REQUIREMENT (why)".
UNMET = (
    "import json, sys\n"
    "from importlib import metadata\n"
    "try:\n"
    "    from packaging.requirements import Requirement\n"
    "except ImportError:\n"
    "    from pip._vendor.packaging.requirements import Requirement\n"
    "unmet = []\n"
    "for text in json.loads(sys.argv[1]):\n"
    "    req = Requirement(text)\n"
    "    if req.marker is not None and not req.marker.evaluate({'extra': ''}):\n"
    "        continue\n"
    "    try:\n"
    "        have = metadata.version(req.name)\n"
    "    except metadata.PackageNotFoundError:\n"
    "        unmet.append(text + ' (not installed)')\n"
    "        continue\n"
    "    if req.specifier and not req.specifier.contains(have, prereleases=True):\n"
    "        unmet.append('%s (%s is installed)' % (text, have))\n"
    "print(json.dumps(unmet))\n"
)


RUST = ("maturin", "setuptools-rust", "setuptools_rust")


def refuse_rust(found):
    """Rust extensions cannot be built here: their crates come from a registry the guest cannot
    reach. Say so before a long build fails on it."""
    if found is None:
        return
    backend, requires = found
    names = [r for r in requires if re.split(r"[\s<>=!~;\[(]", r.strip(), 1)[0].lower() in RUST]
    if backend.split(":")[0].split(".")[0] == "maturin" or names:
        raise GuestError("this sdist builds Rust code (%s): that needs a Rust toolchain in the build image and "
                         "its crates vendored into the sdist (cargo vendor), which builder does not provide; "
                         "leave the package out or build it where its crates are available"
                         % ", ".join(names or [backend]))


def check_backend(python, src, env, backend, requires):
    """Refuse, naming each, the backend's requirements the offline build environment lacks:
    the guest has no network, so each must be pinned (build_requires) or an OS package of the
    build image."""
    code, output = capture([python, "-c", UNMET, json.dumps(requires)], cwd=src, env=env)
    lines = output.strip().splitlines()
    if code != 0 or not lines:
        raise GuestError("could not check the build backend's requirements (%s): %s"
                         % (describe_exit(code), pick_error(lines)))
    unmet = json.loads(lines[-1])
    if unmet:
        raise GuestError("the build backend %s needs %s: pin it in build_requires (name, version, sha256 of its "
                         "wheel: the build has no network), or add its OS package to system.<family>.build"
                         % (backend, "; ".join(unmet)))
    say("build backend %s: its requirements are met (%s)" % (backend, ", ".join(requires) or "none"))


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


def install_tools(python, wheels, dest, work):
    """For a PEP 517 build (no setup.py): the pinned wheels installed, offline and without their
    dependencies (each is pinned), into one folder that goes on PYTHONPATH, with their scripts in
    DEST/bin on PATH: a platform wheel's program (ninja, cmake) or a tool's command (meson) is
    then found by the backend as an OS package's would be."""
    fresh_dir(dest)
    home = os.path.join(work, "home")
    if not os.path.isdir(home):
        os.makedirs(home)
    env = environ({"HOME": home, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"},
                  drop=("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PYTHONPATH"))
    argv = [python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-cache-dir", "--target", dest]
    code, output = capture(argv + list(wheels), env=env)
    if code != 0:
        raise GuestError("the build_requires could not be installed (%s): %s"
                         % (describe_exit(code), pick_error(output.splitlines())))
    say("build_requires installed into %s (%d wheel(s))" % (dest, len(wheels)))
    return dest


def build_env(spec, work, tools, epoch=None, flags=()):
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
        if os.path.isdir(os.path.join(tools, "bin")):  # installed tools' commands (see install_tools)
            extra["PATH"] = os.path.join(tools, "bin") + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin")
    if epoch is not None:
        # The same for every build of the sdist (see _reproducible.py); a set's order in a
        # generated file does not change with the hash seed either.
        extra["SOURCE_DATE_EPOCH"] = str(epoch)
        extra["PYTHONHASHSEED"] = "0"
    for name, value in (spec.get("env") or {}).items():
        extra[name] = str(value)
    # The host sets PYTHONDONTWRITEBYTECODE for its own reasons; eggs carry .pyc as they always
    # have, so the build must byte-compile. Index settings must not leak into an offline build.
    env = environ(extra, drop=("PYTHONDONTWRITEBYTECODE", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL",
                               "PIP_FIND_LINKS", "PYTHONPATH"))
    return repro.add_flags(env, flags, sys.version_info[0] == 2) if flags else env


def has_pip(python, env):
    # Importing the package is enough to choose the frontend and costs a tenth of `pip --version`.
    code, _ = capture([python, "-c", "import pip"], env=env)
    return code == 0


def build_command(fmt, python, src, dist, setup_args, use_pip, config_settings=()):
    """argv for one format. Wheels go through `pip wheel` where it honours setup_args; the
    backend's config settings (meson-python's setup-args, scikit-build-core's cmake.define.X)
    go to it as pip's -C KEY=VALUE."""
    if fmt == "egg":
        return [python, "-c", SHIM] + setup_args + ["bdist_egg", "--dist-dir", dist]
    # pip 23.0.1 (Debian 12) passes --global-option to a legacy setup.py, but for a project with
    # a pyproject.toml (any, so PEP 517) it prints "Ignoring --global-option" and builds without
    # them: PyYAML 5.4.1 would silently lose --with-libyaml. Those go through setup.py directly.
    pep517 = os.path.isfile(os.path.join(src, "pyproject.toml"))
    if use_pip and not (setup_args and pep517):
        argv = [python, "-m", "pip", "wheel", "-v", "--no-build-isolation", "--no-index", "--no-deps",
                "--no-cache-dir", "-w", dist]
        settings = ["--config-settings=%s=%s" % (key, value) for key, value in config_settings]
        return argv + settings + ["--global-option=%s" % a for a in setup_args] + [src]
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


def build_format(fmt, python, src, work, out, spec, env, use_pip, wheel_made=None):
    if fmt == "egg" and not os.path.isfile(os.path.join(src, "setup.py")):
        return egg_from_wheel(python, src, work, out, spec, env, use_pip, wheel_made)
    dist = fresh_dir(os.path.join(work, "dist-" + fmt))
    argv = build_command(fmt, python, src, dist, list(spec.get("setup_args") or []), use_pip,
                         spec.get("config_settings") or [])
    started = time.time()
    before = os.times()
    COMMANDS[fmt] = argv
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
    normalise(os.path.join(dist, made[0]), fmt, env)
    shutil.copy2(os.path.join(dist, made[0]), os.path.join(out, made[0]))
    return made[0]


def normalise(path, fmt, env):
    """The artifact's zip rewritten so that a rebuild gives the same bytes (see _reproducible.py):
    setuptools' bdist_egg stores each file's own time whatever SOURCE_DATE_EPOCH says."""
    epoch = int(env.get("SOURCE_DATE_EPOCH") or repro.ZIP_EPOCH)
    say("%s: %s" % (os.path.basename(path), repro.normalise(path, epoch, recompile=(fmt == "egg"))))


# setuptools' own wheel-to-egg conversion (what easy_install did with a wheel): the egg folder it
# makes is zipped as bdist_egg's are, its members sorted.
WHEEL_TO_EGG = (
    "import os, sys\n"
    "from setuptools.wheel import Wheel\n"
    "wheel = Wheel(sys.argv[1])\n"
    "folder = os.path.join(sys.argv[2], wheel.egg_name())\n"
    "wheel.install_as_egg(folder)\n"
    "print(folder)\n"
)


def egg_from_wheel(python, src, work, out, spec, env, use_pip, wheel_made):
    """An egg for an sdist without a setup.py (bdist_egg needs one): made from the wheel of the
    same build (built now if wheels were not asked for) with setuptools' conversion."""
    if wheel_made is None:
        wheel_made = build_format("wheel", python, src, work, fresh_dir(os.path.join(work, "wheel-for-egg")),
                                  spec, env, use_pip)
        wheel_path = os.path.join(work, "wheel-for-egg", wheel_made)
    else:
        wheel_path = os.path.join(out, wheel_made)
    folder = fresh_dir(os.path.join(work, "dist-egg"))
    code, output = capture([python, "-c", WHEEL_TO_EGG, wheel_path, folder], env=env)
    if code != 0:
        raise GuestError("egg from %s failed (%s): %s" % (wheel_made, describe_exit(code),
                                                          pick_error(output.splitlines())))
    unpacked = output.strip().splitlines()[-1]
    name = os.path.basename(unpacked)
    egg = zipfile.ZipFile(os.path.join(folder, name + ".zip"), "w", zipfile.ZIP_DEFLATED)
    try:
        for top, dirs, files in os.walk(unpacked):
            dirs.sort()
            for file_name in sorted(files):
                path = os.path.join(top, file_name)
                egg.write(path, os.path.relpath(path, unpacked))
    finally:
        egg.close()
    normalise(os.path.join(folder, name + ".zip"), "egg", env)
    shutil.move(os.path.join(folder, name + ".zip"), os.path.join(out, name))
    say("egg: %s, made from %s by setuptools' wheel-to-egg conversion (the sdist has no setup.py)"
        % (name, wheel_made))
    return name


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
    os.umask(0x12)  # 022: what a build writes is 0644 or 0755, whatever the guest's umask was
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
        if spec.get("build_requires") and not os.path.isfile(os.path.join(src, "setup.py")) and has_pip(
                sys.executable, environ()):
            tools = install_tools(sys.executable, spec["build_requires"], os.path.join(work, "tools"), work)
        elif spec.get("build_requires"):
            tools = unpack_tools(spec["build_requires"], os.path.join(work, "tools"))
        epoch, why = repro.epoch_of(spec.get("env") or {}, sdist)
        say("SOURCE_DATE_EPOCH=%d (%s, from %s)" % (epoch, repro.iso(epoch), why))
        flags = []
        compiler = repro.compiler_argv(build_env(spec, work, tools))
        if compiler is not None:
            flags = repro.prefix_map_flags(compiler, src, work)
            say("build paths: %s" % (" ".join(flags) or "%s accepts neither -ffile-prefix-map nor -fdebug-prefix-map: "
                                     "the build folder stays in debug information" % " ".join(compiler)))
        result["reproducible"] = {"source_date_epoch": epoch, "from": why, "flags": flags}
        env = build_env(spec, work, tools, epoch, flags)
        lap("unpack")
        python = build_python(spec, work)
        if spec.get("virtualenv"):
            lap("virtualenv")
        use_pip = sys.version_info[0] >= 3 and has_pip(python, env)
        try:
            declared = build_system(src)
        except GuestError:
            declared = None  # a setup.py build does not read it; without setup.py it is reported below
        refuse_rust(declared)
        if not os.path.isfile(os.path.join(src, "setup.py")):
            # No setup.py: the PEP 517 backend builds the wheel (through pip, offline, in this
            # environment), and the egg is made from that wheel.
            found = build_system(src)
            if found is None or not use_pip:
                raise GuestError("%s has no setup.py, and its pyproject.toml build needs Python 3 with pip "
                                 "in the build image" % os.path.basename(sdist))
            if spec.get("setup_args"):
                raise GuestError("setup_args are options of setup.py, and this sdist has none (its build backend is "
                                 "%s)" % found[0])
            check_backend(python, src, env, found[0], found[1])
            lap("backend")
        elif spec.get("config_settings"):
            raise GuestError("config_settings go to a pyproject.toml build's backend, and this sdist has a setup.py: "
                             "give its options as setup_args")
        formats = list(spec["formats"])
        if not os.path.isfile(os.path.join(src, "setup.py")):
            formats.sort(key=lambda f: f != "wheel")  # the wheel first: the egg is made from it
        wheel_made = None
        for fmt in formats:
            if fmt not in SUFFIX:
                errors.append("unknown format %r (expected egg or wheel)" % fmt)
                continue
            try:
                made = build_format(fmt, python, src, work, out, spec, env, use_pip, wheel_made)
                result["artifacts"].append({"format": fmt, "filename": made})
                if fmt == "wheel":
                    wheel_made = made
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
    result["commands"] = COMMANDS
    write_json(os.path.join(out, "build-result.json"), result)
    say("build %s%s" % ("ok" if result["ok"] else "FAILED: ", result["error"] or ""))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))

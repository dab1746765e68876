# Reproducible artifacts: the same sdist, tools and build image give the same bytes, build after
# build. Used by build.py inside build guests; the same Python 2.6+ / 3.x rules as _common.py.
#
# What varies between two builds of one sdist, and what this does about it:
#   - times: setuptools' bdist_egg stores each file's own mtime (the build's clock for every
#     generated file) and ignores SOURCE_DATE_EPOCH; wheel honours it. Every build gets
#     SOURCE_DATE_EPOCH from the sdist (source_date_epoch), and every artifact is rewritten with
#     that one time on every member (normalise);
#   - order and modes: members are sorted (a wheel's .dist-info last, its RECORD at the very end,
#     as wheel itself writes them) and get 0644, or 0755 where any execute bit was set;
#   - .pyc files carry the source's mtime (Python 2, and 3 without SOURCE_DATE_EPOCH) and the
#     absolute path they were compiled at: an egg's .pyc are compiled again from the egg's own
#     .py with the member's relative path and a fixed header (CHECKED_HASH on Python 3.7+);
#   - compiled code carries the build folder in its debug information: the compiler gets
#     -ffile-prefix-map (gcc 8+, clang 10+) or else -fdebug-prefix-map (gcc 4.3+), whichever it
#     accepts, mapping the unpacked sdist to "." (prefix_map_flags); CentOS 5's gcc 4.1 takes
#     neither, and there the path stays (the same in every docker guest, so its builds there still
#     match; a Vagrant machine names each cell's folder after the cell's own user).
# Only zip metadata and the egg's .pyc change: a member's content is never touched otherwise, so
# a wheel's RECORD (hashes of contents) stays true.
from __future__ import absolute_import, print_function

import calendar
import os
import py_compile
import shlex
import shutil
import stat
import sys
import tarfile
import tempfile
import time
import zipfile

from _common import GuestError, capture, one_line, which

# The earliest time a zip member can carry (1980-01-01T00:00:00Z, DOS time's epoch).
ZIP_EPOCH = 315532800

try:
    from importlib.util import MAGIC_NUMBER as MAGIC
except ImportError:  # Python 2, and 3 before 3.4
    import imp
    MAGIC = imp.get_magic()


def source_date_epoch(sdist):
    """The time the source was last changed: the newest mtime among the sdist's members (tar
    headers; a zip's member times taken as UTC), no earlier than zip's epoch. Every sdist has
    member times, where PKG-INFO is missing from hand-made ones; for sdists made by setuptools
    PKG-INFO is written last and is that newest member anyway. It is fixed by the sdist's bytes
    (its pinned sha256), so every rebuild gets the same."""
    newest = 0
    if sdist.endswith(".zip"):
        archive = zipfile.ZipFile(sdist)
        try:
            for info in archive.infolist():
                newest = max(newest, calendar.timegm(info.date_time))
        finally:
            archive.close()
    else:
        archive = tarfile.open(sdist, "r:*")
        try:
            for member in archive:
                newest = max(newest, int(member.mtime))
        finally:
            archive.close()
    return max(newest, ZIP_EPOCH)


def iso(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def compiler_argv(env):
    """The C compiler distutils would run (CC, else the Python's own configuration), as argv, or
    None when there is none here."""
    cc = env.get("CC")
    if not cc:
        try:
            import sysconfig
            cc = sysconfig.get_config_var("CC")
        except ImportError:  # Python 2.6
            from distutils import sysconfig
            cc = sysconfig.get_config_var("CC")
    argv = shlex.split(cc or "cc")
    if not argv or not (os.path.isabs(argv[0]) and os.path.isfile(argv[0]) or which(argv[0], env.get("PATH"))):
        return None
    return argv


def prefix_map_flags(compiler, src, work):
    """The flags that keep `src` out of compiled output: the first of -ffile-prefix-map (debug
    information, __FILE__ and the like) and -fdebug-prefix-map (debug information only) that the
    compiler accepts, tried on an empty file; [] if it accepts neither (gcc before 4.3)."""
    for option in ("-ffile-prefix-map", "-fdebug-prefix-map"):
        flag = "%s=%s=." % (option, src)
        code, _ = capture(compiler + ["-Werror", flag, "-x", "c", "-c", "-o", os.devnull, os.devnull], cwd=work)
        if code == 0:
            return [flag]
    return []


def flag_variables(py2):
    """Where the flags go. Python 2.7's distutils *replaces* its own CFLAGS (-fno-strict-aliasing
    among them) with an environment CFLAGS, and appends CPPFLAGS; Python 3's appends CFLAGS, which
    meson and CMake read too (with CXXFLAGS for C++)."""
    return py2 and ("CPPFLAGS",) or ("CFLAGS", "CXXFLAGS")


def add_flags(env, flags, py2):
    for name in flag_variables(py2):
        env[name] = " ".join([value for value in (env.get(name, "").strip(), " ".join(flags)) if value])
    return env


# --- zips ----------------------------------------------------------------------------------------

def member_order(name):
    """Sorted by name, with a wheel's .dist-info after everything else and its RECORD last."""
    top = name.split("/")[0]
    info = top.endswith(".dist-info")
    return (info, info and name == top + "/RECORD", name)


def member_mode(info):
    """0644 for a file, 0755 for one with any execute bit or a folder; a symlink stays one."""
    mode = (info.external_attr >> 16) & 0xFFFF
    if info.filename.endswith("/"):
        return stat.S_IFDIR | 0x1ED
    if stat.S_ISLNK(mode):
        return stat.S_IFLNK | 0x1FF
    if mode & 0x49:
        return stat.S_IFREG | 0x1ED
    return stat.S_IFREG | 0x1A4


def pyc_source(name):
    """(the .py a .pyc member was compiled from, its optimisation level), or None: x.pyc beside
    x.py (Python 2), or __pycache__/x.TAG[.opt-N].pyc below x.py's folder (Python 3)."""
    if not name.endswith(".pyc"):
        return None
    folder, base = os.path.split(name)
    if os.path.basename(folder) != "__pycache__":
        return name[:-1], 0
    parts = base.split(".")
    optimize = 0
    for part in parts[1:-1]:
        if part.startswith("opt-") and part[4:].isdigit():
            optimize = int(part[4:])
    source = os.path.join(os.path.dirname(folder), parts[0] + ".py")
    return source.replace(os.sep, "/"), optimize


def compile_pyc(source_name, source, epoch, optimize, scratch):
    """The .pyc of `source` as this Python writes it, compiled under the member's own relative
    name (no build path), with `epoch` as the source time of a timestamp header and CHECKED_HASH
    where Python has it (3.7+): valid after the egg is unzipped, whatever times the files get."""
    src = os.path.join(scratch, "source.py")
    out = os.path.join(scratch, "compiled.pyc")
    handle = open(src, "wb")
    try:
        handle.write(source)
    finally:
        handle.close()
    os.utime(src, (epoch, epoch))
    extra = {}
    if optimize and sys.version_info[0] >= 3:
        extra["optimize"] = optimize
    modes = getattr(py_compile, "PycInvalidationMode", None)
    if modes is not None:
        extra["invalidation_mode"] = modes.CHECKED_HASH
    py_compile.compile(src, out, source_name, True, **extra)
    handle = open(out, "rb")
    try:
        return handle.read()
    finally:
        handle.close()


def normalise(path, epoch, recompile=False):
    """Rewrite the zip at `path` in place: members sorted, every one dated `epoch`, modes 0644 or
    0755, Unix as the maker, deflated, no extra fields or comments; with `recompile` (eggs), each
    .pyc made by this Python compiled again from its .py in the zip (see compile_pyc). Returns
    what it did, for the log. The same members give the same bytes."""
    archive = zipfile.ZipFile(path)
    try:
        members = [(info, archive.read(info.filename)) for info in archive.infolist()]
    finally:
        archive.close()
    sources = dict([(info.filename, data) for info, data in members])
    members.sort(key=lambda pair: member_order(pair[0].filename))
    when = time.gmtime(max(epoch, ZIP_EPOCH))[:6]
    scratch = tempfile.mkdtemp()
    recompiled, kept = 0, []
    tmp = path + ".normalising"
    out = zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED)
    try:
        for info, data in members:
            found = recompile and pyc_source(info.filename)
            if found and found[0] in sources and data[:4] == MAGIC:
                try:
                    data = compile_pyc(found[0], sources[found[0]], epoch, found[1], scratch)
                    recompiled += 1
                except (py_compile.PyCompileError, SyntaxError, ValueError, TypeError):
                    kept.append(info.filename)  # as bdist_egg made it: no worse than before
            new = zipfile.ZipInfo(info.filename, when)
            new.create_system = 3
            new.external_attr = member_mode(info) << 16
            if info.filename.endswith("/"):
                new.external_attr |= 0x10  # the MS-DOS folder flag, as zipfile gives folders
                new.compress_type = zipfile.ZIP_STORED
            else:
                new.compress_type = zipfile.ZIP_DEFLATED
            out.writestr(new, data)
    finally:
        out.close()
        shutil.rmtree(scratch, ignore_errors=True)
    os.rename(tmp, path)
    said = "%d members sorted, dated %s, modes 0644/0755" % (len(members), iso(epoch))
    if recompile:
        said += ", %d .pyc compiled again without the build path" % recompiled
    if kept:
        said += " (%d kept as built: they do not compile here: %s)" % (len(kept), one_line(", ".join(kept), 120))
    return said


def epoch_of(env, sdist):
    """SOURCE_DATE_EPOCH as the package's env gives it, else from the sdist."""
    given = env.get("SOURCE_DATE_EPOCH")
    if given is None:
        return source_date_epoch(sdist), "the newest file of %s" % os.path.basename(sdist)
    try:
        return int(given), "the package's env"
    except ValueError:
        raise GuestError("env SOURCE_DATE_EPOCH is %r: it must be a whole number of seconds since 1970 (or leave "
                         "it out: builder takes it from the sdist)" % given)

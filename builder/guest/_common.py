# Helpers shared by build.py and check.py, which run inside guests.
#
# Everything here must run unchanged on Python 2.6, 2.7 and 3.6+, standard library only:
# no f-strings, no set/dict comprehensions or set literals, no subprocess.run/check_output,
# no argparse, no OrderedDict, no `with` on TarFile/ZipFile (2.6 lacks their context managers),
# no str.format with `{}`.
from __future__ import absolute_import, print_function

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile

PY2 = sys.version_info[0] == 2

# An sdist or an artifact bigger than this once unpacked is refused: no real package comes
# near it, and a hostile archive could fill the guest's disk.
MAX_UNPACKED = 1024 * 1024 * 1024

# zipfile names the exception BadZipfile on 2.6 and BadZipFile later (the old name is an alias
# until it goes away).
BadZip = getattr(zipfile, "BadZipFile", None) or getattr(zipfile, "BadZipfile")


class GuestError(Exception):
    """A failure with a one-line reason a user can act on."""


def native(value):
    """json gives unicode on Python 2; argv and environ want native str there."""
    if PY2:
        if isinstance(value, unicode):  # noqa: F821 (Python 2 only)
            return value.encode("utf-8")
        if isinstance(value, list):
            return [native(v) for v in value]
        if isinstance(value, dict):
            return dict([(native(k), native(v)) for k, v in value.items()])
    return value


def load_spec(path):
    handle = open(path, "rb")
    try:
        data = handle.read()
    finally:
        handle.close()
    return native(json.loads(data.decode("utf-8")))


def write_json(path, data):
    """Write via a temporary name, so the host never reads half a result."""
    text = json.dumps(data, indent=2, sort_keys=True)
    if not isinstance(text, bytes):
        text = text.encode("ascii")
    tmp = path + ".tmp"
    handle = open(tmp, "wb")
    try:
        handle.write(text + b"\n")
    finally:
        handle.close()
    os.rename(tmp, path)


def say(text):
    """One line to the log. Non-ASCII must never crash a run on a C-locale Python."""
    text = native_text(text)
    try:
        sys.stdout.write(text + "\n")
    except UnicodeEncodeError:
        sys.stdout.write(text.encode("ascii", "backslashreplace").decode("ascii") + "\n")
    sys.stdout.flush()


def decode(data):
    """A command's output bytes as the native str: undecodable bytes become U+FFFD. On Python 2
    that is UTF-8 bytes, not unicode: str() of an exception holding unicode text beyond ASCII
    raises UnicodeEncodeError there (gcc quotes names in U+2018 and U+2019), hiding the real error."""
    text = data.decode("utf-8", "replace")
    return text.encode("utf-8") if PY2 else text


def native_text(value):
    """Any text (unicode, bytes, an exception) as the native str, never raising: for messages."""
    if PY2:
        if isinstance(value, unicode):  # noqa: F821
            return value.encode("utf-8", "replace")
        if isinstance(value, str):
            return value
        try:
            return str(value)
        except UnicodeError:
            try:
                return unicode(value).encode("utf-8", "replace")  # noqa: F821
            except Exception:
                return repr(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def one_line(text, limit=300):
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def tail(text, lines=30):
    return "\n".join(text.rstrip().splitlines()[-lines:])


def python_version():
    return "%d.%d.%d" % tuple(sys.version_info[:3])


def fresh_dir(path):
    """An empty folder at path. A folder already there is emptied, not replaced: it may be a
    mount point, or sit in a parent the guest user cannot write (a vagrant cell's folder)."""
    if os.path.isdir(path) and not os.path.islink(path):
        for name in os.listdir(path):
            child = os.path.join(path, name)
            if os.path.isdir(child) and not os.path.islink(child):
                shutil.rmtree(child)
            else:
                os.remove(child)
        return path
    if os.path.lexists(path):
        os.remove(path)
    os.makedirs(path)
    return path


def which(name, path=None):
    for folder in (path if path is not None else os.environ.get("PATH", "")).split(os.pathsep):
        candidate = os.path.join(folder or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def signal_name(number):
    for name in dir(signal):
        if name.startswith("SIG") and not name.startswith("SIG_") and getattr(signal, name) == number:
            return name
    return "signal %d" % number


def describe_exit(code):
    """Popen gives -N when a signal killed the child; say which, since a crash is the news."""
    if code is not None and code < 0:
        return "killed by %s" % signal_name(-code)
    return "exit %s" % code


def environ(extra=None, drop=()):
    env = dict(os.environ)
    for name in drop:
        env.pop(name, None)
    if extra:
        env.update(extra)
    return env


def show(argv):
    """A command as the log shows it; multi-line -c code is abbreviated to its first line."""
    return "$ " + " ".join([a.split("\n")[0] + " ..." if "\n" in a else a for a in argv])


def run_tee(argv, cwd=None, env=None):
    """Run argv with its output passing through to ours (the host keeps it as the log) and
    return (returncode, last lines). stderr is merged so the tail has the error text in order."""
    say(show(argv))
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=open(os.devnull, "rb"),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as exc:
        return 127, ["cannot run %s: %s" % (argv[0], exc)]
    out = getattr(sys.stdout, "buffer", sys.stdout)
    last = []
    for line in iter(proc.stdout.readline, b""):
        out.write(line)
        out.flush()
        last.append(decode(line).rstrip())
        del last[:-100]
    proc.stdout.close()
    return proc.wait(), last


def capture(argv, cwd=None, env=None, timeout=None, echo=False):
    """Run argv; return (returncode, output); returncode is None if it outlived `timeout`.
    Output goes to a temporary file, not a pipe, so a chatty child never blocks on it."""
    if echo:
        say(show(argv))
    sink = tempfile.TemporaryFile()
    try:
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=open(os.devnull, "rb"),
                                    stdout=sink, stderr=subprocess.STDOUT)
        except OSError as exc:
            return 127, "cannot run %s: %s" % (argv[0], exc)
        code = _wait(proc, timeout)
        sink.seek(0)
        output = decode(sink.read())
    finally:
        sink.close()
    if echo and output.strip():
        say(output.rstrip())
    return code, output


def _wait(proc, timeout):
    if timeout is None:
        return proc.wait()
    deadline = time.time() + timeout
    while proc.poll() is None:
        if time.time() > deadline:
            proc.kill()
            proc.wait()
            return None
        time.sleep(0.05)
    return proc.returncode


# --- archives ---------------------------------------------------------------------------------

def check_member_name(name):
    """Refuse a member that would land outside the folder it is unpacked into."""
    if not name or name.startswith("/") or name.startswith("\\") or (len(name) > 1 and name[1] == ":"):
        raise GuestError("member %r has an absolute path" % name)
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise GuestError("member %r has '..' in its path" % name)


def check_link_target(member_name, target, hard=False):
    """A link must resolve inside the tree. Hard link targets are relative to the archive root;
    symlink targets to the link's own folder."""
    if target.startswith("/"):
        raise GuestError("link %r -> %r has an absolute target" % (member_name, target))
    base = "" if hard else os.path.dirname(member_name)
    resolved = os.path.normpath(os.path.join(base, target))
    if resolved == ".." or resolved.startswith("../"):
        raise GuestError("link %r -> %r points outside the archive" % (member_name, target))


def _inside(root, path):
    root = os.path.realpath(root)
    path = os.path.realpath(path)
    return path == root or path.startswith(root + os.sep)


def unpack(archive, dest, limit=MAX_UNPACKED):
    """Unpack a .tar.gz/.tgz/.tar.bz2/.tar/.zip/.whl/.egg into dest, refusing anything unsafe."""
    name = os.path.basename(archive)
    try:
        if name.endswith((".zip", ".whl", ".egg")):
            _unzip(archive, dest, limit)
        elif name.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar", ".tar.xz")):
            _untar(archive, dest, limit)
        else:
            raise GuestError("unknown archive type (expected .tar.gz, .tgz, .tar.bz2 or .zip)")
    except GuestError as exc:
        raise GuestError("refusing %s: %s" % (name, exc))
    except getattr(tarfile, "FilterError", GuestError) as exc:  # Python 3.12+'s own checks
        raise GuestError("refusing %s: %s" % (name, one_line(native_text(exc))))
    except EnvironmentError as exc:
        if getattr(exc, "errno", None) in SYSTEM_ERRNOS:  # the guest refused the write, not the archive
            raise GuestError("could not unpack %s into %s: %s" % (name, dest, one_line(native_text(exc.strerror or exc))))
        raise GuestError("%s is corrupt or truncated: %s: %s" % (name, type(exc).__name__, one_line(native_text(exc))))
    except Exception as exc:  # corrupt, truncated, CRC mismatch, unreadable: all one story
        raise GuestError("%s is corrupt or truncated: %s: %s" % (name, type(exc).__name__, one_line(native_text(exc))))
    # Whatever the checks above missed (links chained through links), nothing may resolve
    # outside dest once unpacked.
    for folder, dirs, files in os.walk(dest):
        for entry in dirs + files:
            path = os.path.join(folder, entry)
            if os.path.islink(path) and not _inside(dest, path):
                raise GuestError("refusing %s: link %r points outside the archive"
                                 % (name, os.path.relpath(path, dest)))


# What the system says when it cannot take what is unpacked (a full disk, a quota, a read-only
# or forbidden folder, no more files or memory, a failing disk): no fault of the archive's, and
# told as it is. Any other error while unpacking (a truncated gzip stream is an IOError without
# errno, a bad offset an EINVAL) means the archive is corrupt or truncated.
SYSTEM_ERRNOS = tuple([getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "EMFILE",
                                                          "ENFILE", "ENOMEM", "EIO", "ENAMETOOLONG")
                       if hasattr(errno, name)])


def _unzip(archive, dest, limit):
    zf = zipfile.ZipFile(archive)
    try:
        infos = zf.infolist()
        total = 0
        for info in infos:
            check_member_name(info.filename)
            total += info.file_size
        if total > limit:
            raise GuestError("it unpacks to %d bytes, over the limit of %d: a decompression bomb, or no sdist"
                             % (total, limit))
        for info in infos:
            target = os.path.join(dest, info.filename)
            if info.filename.endswith("/"):
                if not os.path.isdir(target):
                    os.makedirs(target)
                continue
            _make_parent(dest, target, info.filename)
            source = zf.open(info)
            try:
                sink = open(target, "wb")
                try:
                    shutil.copyfileobj(source, sink)
                finally:
                    sink.close()
            finally:
                source.close()
            # Keep the executable bit (scripts, configure); zip symlinks stay plain files.
            mode = (info.external_attr >> 16) & 0x1FF
            if mode & 0x49:
                os.chmod(target, 0x1ED)  # 0755
    finally:
        zf.close()


def _make_parent(dest, target, name):
    """Create the folder a member lands in, refusing one that resolves outside dest (a link)."""
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        os.makedirs(parent)
    if not _inside(dest, parent):
        raise GuestError("member %r would land outside the folder" % name)


def _untar(archive, dest, limit):
    tf = tarfile.open(archive, "r:*")
    try:
        # Judge each member as its header is read, before the next one: a decompression bomb is
        # refused at its first oversized header, without inflating the data behind it.
        total = 0
        for member in tf:
            check_member_name(member.name)
            if member.issym() or member.islnk():
                check_link_target(member.name, member.linkname, hard=member.islnk())
            elif not (member.isfile() or member.isdir()):
                raise GuestError("member %r is a device, fifo or other special file" % member.name)
            total += member.size
            if total > limit:
                raise GuestError("it unpacks to at least %d bytes, over the limit of %d (at member %r): "
                                 "a decompression bomb, or no sdist" % (total, limit, member.name))
        members = tf.getmembers()  # read above already: no second pass over the archive
        # Python 3.12+ warns unless a filter is chosen; "data" repeats our checks, which is fine.
        extra = {}
        if hasattr(tarfile, "data_filter"):
            extra["filter"] = "data"
        for member in members:
            target = os.path.join(dest, member.name)
            if member.isdir():
                # Directories are made writable on purpose: a read-only folder in an sdist
                # would stop the files below it from being unpacked as a non-root user.
                if not os.path.isdir(target):
                    os.makedirs(target)
                continue
            _make_parent(dest, target, member.name)
            tf.extract(member, dest, **extra)
    finally:
        tf.close()


# --- environments -----------------------------------------------------------------------------

def make_virtualenv(wheel, dest, work):
    """Create a virtualenv with the single-file virtualenv 16.x from its wheel, offline: it
    seeds setuptools, pip and wheel from the wheels it carries (virtualenv_support/), and
    --no-download sets PIP_NO_INDEX for that step. Returns the env's python."""
    tool = fresh_dir(os.path.join(work, "virtualenv-tool"))
    unpack(wheel, tool)
    script = os.path.join(tool, "virtualenv.py")
    if not os.path.isfile(script):
        raise GuestError("%s has no virtualenv.py: builder needs the single-file virtualenv 16.x"
                         % os.path.basename(wheel))
    env = environ({"PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
                  drop=("PYTHONPATH", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS"))
    started = time.time()
    code, output = capture([sys.executable, script, "--no-download", dest], env=env, echo=True)
    if code != 0:
        raise GuestError("virtualenv could not create %s (%s): %s"
                         % (dest, describe_exit(code), one_line(tail(output, 3))))
    say("virtualenv ready in %.1f s" % (time.time() - started))
    return os.path.join(dest, "bin", "python")


def write_tree(tar_path, work, names):
    """Put WORK/NAME for each name present into one tar, with links, modes and times as they are
    (.pyc files are checked against their sources' times): a prepared environment the host keeps
    unopened and gives to later guests of the same image (see unpack_tree)."""
    tar = tarfile.open(tar_path, "w")
    try:
        for name in names:
            if os.path.isdir(os.path.join(work, name)):
                tar.add(os.path.join(work, name), arcname=name)
    finally:
        tar.close()


def prepare_tree(spec, names, make):
    """Make, in a guest no sdist or artifact has touched, what every guest of its role on the
    platform starts from: make(WORK) builds it under WORK and returns (how it was made, the keys
    a later guest's spec gets); the NAMES under WORK go into OUT/tree.tar (write_tree), and
    OUT/prepare-result.json says how, with those keys under "spec", or why it could not."""
    work, out = spec["work"], spec["out"]
    for folder in (work, out):
        if not os.path.isdir(folder):
            os.makedirs(folder)
    result = {"ok": False, "how": None, "spec": {}, "reasons": []}
    try:
        started = time.time()
        result["how"], result["spec"] = make(work)
        write_tree(os.path.join(out, "tree.tar"), work, names)
        say("prepared %s in %.1f s" % (result["how"], time.time() - started))
        result["ok"] = True
    except GuestError as exc:
        result["reasons"].append(native_text(exc))
    write_json(os.path.join(out, "prepare-result.json"), result)
    return 0 if result["ok"] else 1


def unpack_tree(spec, drop):
    """Unpack the platform's prepared environment (write_tree) into an empty WORK, at the path it
    was made at. It was made by our own prepare() in a guest of this image that no sdist or
    artifact touched, so it is unpacked as is: absolute links into the system Python are what a
    virtualenv is made of. On any problem the keys in `drop` are removed from the spec and the
    guest makes its own environment. Returns True if the prepared one is in place."""
    work = spec["work"]
    started = time.time()
    try:
        fresh_dir(work)
        tool = which("tar")
        if tool:  # three times faster than tarfile for a virtualenv's thousand files
            code, output = capture([tool, "-xf", spec["prepared_tar"], "-C", work])
            if code != 0:
                raise OSError("tar: %s" % one_line(tail(output, 2)))
        else:
            tar = tarfile.open(spec["prepared_tar"])
            try:
                tar.extractall(work)
            finally:
                tar.close()
    except (OSError, tarfile.TarError) as exc:
        say("the prepared environment could not be unpacked (%s): making one" % exc)
        fresh_dir(work)
        for key in drop:
            spec.pop(key, None)
        return False
    say("unpacked the platform's prepared environment in %.1f s" % (time.time() - started))
    return True

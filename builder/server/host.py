# The per-host steps of a deploy: builder copies this one file to each server and runs it over
# ssh; configuration management (see examples/ansible/) runs the same file the same way.
#
#   PYTHON host.py status   ROOT              releases, current, previous, cached files (writes nothing)
#   PYTHON host.py verify   ROOT SHA256...    re-hash those cached files; remove any that changed
#   PYTHON host.py trust    ROOT KEY.pem [replace]  trust this public key for signed manifests
#                                             (once: another key only with `replace`)
#   PYTHON host.py receive  ROOT [BATCH]      verify files in ROOT/cache/.incoming[/BATCH] by sha256
#   PYTHON host.py prepare  ROOT PLAN.json    make ROOT/releases/R: virtualenv, offline install,
#                                             import check, release.json (last: the release is
#                                             complete only once it exists); first of all, with a
#                                             trusted key, the signed manifest (see check_signed)
#   PYTHON host.py switch   ROOT RELEASE      point ROOT/current at a complete release, atomically
#   PYTHON host.py done     ROOT RELEASE      record that the deploy of RELEASE finished here
#   PYTHON host.py prune    ROOT KEEP         remove releases beyond KEEP, never current/previous
#   PYTHON host.py fingerprint ROOT [PACKAGE...]  what this host is: OS, architecture, C library,
#                                             this Python (version, ABI, binary sha256) and the
#                                             installed versions of PACKAGE... (writes nothing)
#
# Layout under ROOT: releases/R/ (a virtualenv; app/ holds the application, release.json says
# what is installed), current -> releases/R, cache/<sha256>/<file> (verified artifacts),
# .history (one JSON line per switch), .deployed, .lock.
#
# builder runs this file from a pipe (`PYTHON - status ROOT < host.py`): nothing of it is kept
# on the host, so nothing there can have changed it, and a read-only root can still be listed.
#
# Each command ends by printing one line: RESULT_MARK followed by a JSON object; it exits 0 on
# success, 1 on a failure the JSON's "error" explains, 2 on bad usage. Standard library only,
# and unchanged on Python 2.6, 2.7 and 3.x (no f-strings, no `with` on zip files, no
# subprocess.check_output, no set literals).
from __future__ import absolute_import, print_function

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile

RESULT_MARK = "@@builder-host-result@@ "
RELEASE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
PY2 = sys.version_info[0] == 2
STEP_TIMEOUT = 900  # seconds for one install or import command
# What prepare found changed on the host and put right (reported with its result).
REPAIRED = []
STALE_SECONDS = 3600  # an arrival folder untouched this long is a dead copy's leftover
ST_RDONLY = 1  # statvfs f_flag of a read-only mount, on Linux and FreeBSD alike
# fsync errors that only say "this file system cannot sync a folder" (not a failed write).
CANNOT_SYNC = (errno.EINVAL, errno.EBADF, getattr(errno, "ENOTSUP", errno.EINVAL), getattr(errno, "EOPNOTSUPP", errno.EINVAL))


class HostError(Exception):
    """A failure with a one-line reason the operator can act on."""


# --- small helpers ----------------------------------------------------------------------------

def log(text):
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def sha256_stream(handle):
    """The sha256 of what is left to read from an open binary file (a file, or a zip member)."""
    digest = hashlib.sha256()
    while True:
        block = handle.read(1 << 20)
        if not block:
            break
        digest.update(block)
    return digest.hexdigest()


def sha256_of(path):
    handle = open(path, "rb")
    try:
        return sha256_stream(handle)
    finally:
        handle.close()


def read_json(path):
    handle = open(path, "rb")
    try:
        return json.loads(handle.read().decode("utf-8"))
    finally:
        handle.close()


def write_atomic(path, data):
    """Write via a temporary name, fsync, rename: readers see the old file or the new one."""
    if not isinstance(data, bytes):
        data = data.encode("utf-8")
    tmp = "%s.tmp-%d" % (path, os.getpid())
    handle = open(tmp, "wb")
    try:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    finally:
        handle.close()
    os.rename(tmp, path)
    sync_dir(os.path.dirname(path))


def sync_dir(path):
    """Make a rename in `path` durable. Some systems cannot open a folder, and some file systems
    cannot sync one (EINVAL, ENOTSUP): then there is nothing more to do, and that is fine. Any
    other fsync error (EIO, ENOSPC) means the rename may not survive a crash: it is raised."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in CANNOT_SYNC:
            raise HostError("%s could not be synced to disk (%s): the last change there may not survive a crash"
                            % (path, os.strerror(exc.errno or 0)))
    finally:
        os.close(fd)


def run(argv, env=None, cwd=None):
    """(returncode, output) of argv, stdout and stderr together; the output is logged too."""
    log("$ " + " ".join(argv))
    sink = tempfile.TemporaryFile()
    try:
        try:
            proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=open(os.devnull, "rb"),
                                    stdout=sink, stderr=subprocess.STDOUT)
        except OSError as exc:
            return 127, "cannot run %s: %s" % (argv[0], exc)
        deadline = time.time() + STEP_TIMEOUT
        while proc.poll() is None:
            if time.time() > deadline:
                proc.kill()
                proc.wait()
                return 124, "timed out after %d s: %s" % (STEP_TIMEOUT, " ".join(argv))
            time.sleep(0.05)
        sink.seek(0)
        output = sink.read().decode("utf-8", "replace")
    finally:
        sink.close()
    if output.strip():
        log(output.rstrip())
    return proc.returncode, output


def last_lines(text, count=3):
    return " | ".join(text.strip().splitlines()[-count:])


def clean_env(extra=None):
    """The environment for the release's own commands: nothing from the login leaks in, and no
    package index is ever consulted."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL",
                 "PIP_FIND_LINKS", "VIRTUAL_ENV"):
        env.pop(name, None)
    env.update({"PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"})
    env.update(extra or {})
    return env


def safe_name(name, what):
    if not name or "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
        raise HostError("%s %r is not a plain file name" % (what, name))
    return name


def remove_tree(path):
    """Rename out of the way, then delete: a kill midway leaves a hidden leftover, never a
    half-deleted folder under its real name."""
    if not os.path.lexists(path):
        return
    trash = os.path.join(os.path.dirname(path), ".trash-%s-%d" % (os.path.basename(path), os.getpid()))
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def unzip(archive, dest):
    """Unpack a zip (egg, wheel) into dest, refusing members that would land outside it."""
    zf = zipfile.ZipFile(archive)
    try:
        for info in zf.infolist():
            name = info.filename
            parts = name.replace("\\", "/").split("/")
            if name.startswith("/") or ".." in parts or (len(name) > 1 and name[1] == ":"):
                raise HostError("refusing %s: member %r would land outside the folder"
                                % (os.path.basename(archive), name))
            target = os.path.join(dest, *[p for p in parts if p])
            if name.endswith("/"):
                if not os.path.isdir(target):
                    os.makedirs(target)
                continue
            if not os.path.isdir(os.path.dirname(target)):
                os.makedirs(os.path.dirname(target))
            source = zf.open(info)
            try:
                sink = open(target, "wb")
                try:
                    shutil.copyfileobj(source, sink)
                finally:
                    sink.close()
            finally:
                source.close()
            if (info.external_attr >> 16) & 0x49:
                os.chmod(target, 0x1ED)  # 0755: keep scripts executable
    finally:
        zf.close()


def untar(archive, dest):
    """Unpack the application's tar.gz into dest: regular files and folders only, inside it."""
    tf = tarfile.open(archive, "r:*")
    try:
        members = tf.getmembers()
        for member in members:
            parts = member.name.split("/")
            if member.name.startswith("/") or ".." in parts or not (member.isfile() or member.isdir()):
                raise HostError("refusing %s: member %r is outside the tree or not a plain file"
                                % (os.path.basename(archive), member.name))
        for member in members:
            tf.extract(member, dest)
    finally:
        tf.close()


# --- the root ---------------------------------------------------------------------------------

class Root(object):
    def __init__(self, path):
        if not os.path.isabs(path):
            raise HostError("the deploy root must be an absolute path, got %r" % path)
        self.path = path.rstrip("/") or "/"
        self.releases = os.path.join(self.path, "releases")
        self.cache = os.path.join(self.path, "cache")
        self.incoming = os.path.join(self.cache, ".incoming")
        self.current = os.path.join(self.path, "current")
        self.history = os.path.join(self.path, ".history")
        self.deployed_file = os.path.join(self.path, ".deployed")
        self._lock = None

    def make(self):
        for folder in (self.path, self.releases, self.cache, self.incoming):
            if not os.path.isdir(folder):
                os.makedirs(folder)

    def lock(self):
        """One host.py at a time changes a root (a second deploy waits); the kernel drops the
        lock when the process dies, even by kill -9."""
        self.make()
        self._lock = open(os.path.join(self.path, ".lock"), "a")
        fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX)

    def release_dir(self, name):
        if not RELEASE_NAME.match(name or ""):
            raise HostError("%r is not a release name (letters, digits, . _ + -; not starting with . or -)" % name)
        return os.path.join(self.releases, name)

    def manifest(self, name):
        """The release's release.json, or None if it is absent or incomplete."""
        path = os.path.join(self.release_dir(name), "release.json")
        try:
            return read_json(path)
        except (IOError, OSError, ValueError):
            return None

    def current_name(self):
        try:
            target = os.readlink(self.current)
        except OSError:
            return None
        return os.path.basename(target.rstrip("/"))

    def history_entries(self):
        """[(line number, entry or None)]: None for a line that does not parse (a switch whose
        record a kill cut short, or worse). Damaged lines are kept, not dropped: what "previous"
        means depends on them (see previous_name)."""
        entries = []
        try:
            handle = open(self.history)
        except IOError:
            return entries
        try:
            for number, line in enumerate(handle, 1):
                try:
                    entry = json.loads(line)
                except ValueError:
                    entry = None
                entries.append((number, entry if isinstance(entry, dict) else None))
        finally:
            handle.close()
        return entries

    def previous(self):
        """(previous release, why it is unknown). The previous release is what current was
        switched from the last time it was switched to. A damaged line after that record may be
        a later switch to current whose "from" is lost: then previous is unknown, and saying so
        is better than naming an older release a rollback would go to."""
        current = self.current_name()
        damaged = None
        for number, entry in reversed(self.history_entries()):
            if entry is None:
                damaged = damaged or number
            elif entry.get("to") == current:
                if damaged:
                    break
                return entry.get("from"), None
        if damaged:
            return None, ("line %d of %s is damaged (a switch cut short?): which release current was switched "
                          "from is not known" % (damaged, self.history))
        return None, None

    def previous_name(self):
        return self.previous()[0]

    def deployed(self):
        try:
            return read_json(self.deployed_file).get("release")
        except (IOError, OSError, ValueError, AttributeError):
            return None

    def cached(self):
        """{sha256: file name} of the verified cache."""
        found = {}
        if not os.path.isdir(self.cache):
            return found
        for sha in os.listdir(self.cache):
            if not SHA256.match(sha):
                continue
            names = os.listdir(os.path.join(self.cache, sha))
            if len(names) == 1:
                found[sha] = names[0]
        return found

    def cache_file(self, entry):
        """The verified path of a plan's {file, sha256}; the hash is checked again here."""
        sha = entry["sha256"]
        name = safe_name(entry["file"], "file")
        if not SHA256.match(sha):
            raise HostError("%s: %r is not a sha256" % (name, sha))
        # By content: the file may have arrived under another name (the same egg for two
        # targets); its name in the plan decides only how it is unpacked.
        present = os.listdir(os.path.join(self.cache, sha)) if os.path.isdir(os.path.join(self.cache, sha)) else []
        path = os.path.join(self.cache, sha, present[0] if len(present) == 1 else name)
        if not os.path.isfile(path):
            raise HostError("%s (sha256 %s) is not in %s: copy it there first (builder deploy does)"
                            % (name, sha[:12], self.cache))
        actual = sha256_of(path)
        if actual != sha:
            remove_tree(os.path.join(self.cache, sha))
            raise HostError("%s in the cache has sha256 %s, expected %s: removed it; the same deploy run again "
                            "copies it anew" % (name, actual, sha))
        return path


# --- commands ---------------------------------------------------------------------------------

def release_list(root):
    releases = []
    if os.path.isdir(root.releases):
        for name in sorted(os.listdir(root.releases)):
            if name.startswith(".") or not os.path.isdir(os.path.join(root.releases, name)):
                continue
            manifest = root.manifest(name)
            releases.append({
                "name": name,
                "complete": manifest is not None,
                "created": manifest.get("created") if manifest else None,
                "fingerprint": manifest.get("fingerprint") if manifest else None,
            })
    # Oldest first; an incomplete release sorts by its folder's time.
    releases.sort(key=lambda r: (r["created"] or time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(os.path.getmtime(os.path.join(root.releases, r["name"])))), r["name"]))
    return releases


def cmd_status(root):
    previous, unknown = root.previous()
    interpreter = interpreter_facts()
    return {
        "interpreter": interpreter,
        "stale": stale_releases(root, interpreter),
        "host": socket.gethostname(),
        "python": "%d.%d.%d" % tuple(sys.version_info[:3]),
        "current": root.current_name(),
        "previous": previous,
        "previous_unknown": unknown,
        "deployed": root.deployed(),
        "releases": release_list(root),
        "cached": root.cached(),
        "unwritable": unwritable(root),
    }


def unwritable(root):
    """The first folder a deploy writes that this user cannot write, and why; None if all can be.
    Asked without writing anything (os.access and statvfs), so a listing writes nothing."""
    for path in (os.path.join(root.path, ".builder"), root.cache, root.releases, root.path):
        existing = path
        while not os.path.isdir(existing) and os.path.dirname(existing) != existing:
            existing = os.path.dirname(existing)
        if os.access(existing, os.W_OK):
            continue
        try:
            read_only = bool(os.statvfs(existing).f_flag & ST_RDONLY)
        except (OSError, AttributeError):
            read_only = False
        why = "read-only file system" if read_only else "permission denied for uid %d" % os.getuid()
        return {"path": path, "why": why}
    return None


def cmd_verify(root, shas):
    """Re-hash the named cached files; one that no longer has its sha256 is removed (and said),
    so the deploy that asked copies it again in the same run."""
    root.lock()
    cached = root.cached()
    corrupt = []
    for sha in shas:
        if not SHA256.match(sha):
            raise HostError("%r is not a sha256" % sha)
        if sha not in cached:
            continue
        actual = sha256_of(os.path.join(root.cache, sha, cached[sha]))
        if actual != sha:
            remove_tree(os.path.join(root.cache, sha))
            corrupt.append({"file": cached[sha], "sha256": sha, "actual": actual})
    return {"corrupt": corrupt}


def cmd_receive(root, batch=None):
    """Move each verified file from cache/.incoming/[BATCH/]<sha256>/<name> into cache/<sha256>/.

    builder copies each run's files into a folder of their own (BATCH), so a copy that died
    half-way never mixes with a later one: what it left is not looked at, and is removed here
    once nobody has touched it for STALE_SECONDS (a copy still running elsewhere keeps its
    folder fresh). Without BATCH (configuration management copies files straight into
    .incoming/), every <sha256> folder there is this arrival."""
    root.lock()
    incoming = root.incoming
    if batch is not None:
        incoming = os.path.join(root.incoming, safe_name(batch, "arrival folder"))
        if not os.path.isdir(incoming):
            raise HostError("%s is not there: the copy did not arrive" % incoming)
        for name in os.listdir(root.incoming):
            path = os.path.join(root.incoming, name)
            if name != batch and newest_change(path) < time.time() - STALE_SECONDS:
                log("removing %s: left by a copy that did not finish" % path)
                remove_tree(path)
    received, refused = [], []
    for sha in sorted(os.listdir(incoming)):
        folder = os.path.join(incoming, sha)
        names = os.listdir(folder) if os.path.isdir(folder) else []
        if not SHA256.match(sha) or len(names) != 1 or not os.path.isfile(os.path.join(folder, names[0])):
            refused.append("%s: not <sha256>/<one file>" % sha)
            remove_tree(folder)
            continue
        actual = sha256_of(os.path.join(folder, names[0]))
        if actual != sha:
            refused.append("%s: sha256 is %s, expected %s" % (names[0], actual, sha))
            remove_tree(folder)
            continue
        target = os.path.join(root.cache, sha)
        if os.path.isdir(target):
            remove_tree(folder)  # already there
        else:
            os.rename(folder, target)
        received.append(names[0])
    if batch is not None:
        remove_tree(incoming)
    sync_dir(root.cache)
    if refused:
        raise HostError("refused on arrival (removed; copy again): " + "; ".join(refused))
    return {"received": received}


def newest_change(path):
    """The newest mtime in a tree (its own included)."""
    newest = os.lstat(path).st_mtime
    for folder, dirs, names in os.walk(path):
        for name in dirs + names:
            try:
                newest = max(newest, os.lstat(os.path.join(folder, name)).st_mtime)
            except OSError:
                pass  # gone while walking: then it is no newer than what is left
    return newest


def cmd_prepare(root, plan_path):
    plan = read_json(plan_path)
    name = plan["release"]
    rel = root.release_dir(name)
    root.lock()
    existing = root.manifest(name)
    if existing is not None and existing.get("fingerprint") == plan["fingerprint"]:
        stale = interpreter_change(existing, interpreter_facts())
        if stale is None:
            return {"release": name, "state": "exists"}
        if root.current_name() == name:
            raise HostError("release %s is current and stale (%s): deploy the application under a new release "
                            "name to make it afresh" % (name, stale))
        REPAIRED.append("release %s was stale (%s): made it afresh" % (name, stale))
        remove_tree(rel)
        existing = None
    if existing is not None:
        raise HostError("release %s already exists here with other contents (%s): give the new release "
                        "another name" % (name, describe_difference(existing, plan)))
    if os.path.lexists(rel):
        log("removing %s: an incomplete release a stopped deploy left" % rel)
        remove_tree(rel)
    started = time.time()
    signature = check_signed(root, plan)
    files = dict((e["sha256"], root.cache_file(e)) for e in plan["artifacts"] + [plan["app"]])
    try:
        python = make_env(root, plan, rel)
        site = site_dir(python)
        installed = install(root, plan, python, site, files)
        app = install_app(files[plan["app"]["sha256"]], rel, site)
        imports = import_check(root, plan, python, app)
    except BaseException:
        # Nothing half-made keeps the release's name: the next deploy starts it afresh.
        remove_tree(rel)
        raise
    manifest = {
        "release": name,
        "fingerprint": plan["fingerprint"],
        "created": now(),
        "host": socket.gethostname(),
        "python": "%d.%d.%d" % tuple(sys.version_info[:3]),
        "interpreter": interpreter_facts(),
        "doctor": plan.get("doctor"),
        "format": plan["format"],
        "artifacts": plan["artifacts"],
        "installed": installed,
        "app": plan["app"],
        "tools": plan.get("tools", {}),
        "imports_script": plan.get("imports"),
        "imports_checked": imports,
        "signature_checked": signature,
        "signed_files": signed_files(plan),
        "builder": plan.get("builder", {}),
        "seconds": round(time.time() - started, 1),
    }
    write_atomic(os.path.join(rel, "release.json"), json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return {"release": name, "state": "created", "seconds": manifest["seconds"], "imports": imports,
            "repaired": REPAIRED}


def describe_difference(existing, plan):
    old = dict((a["file"], a["sha256"]) for a in existing.get("artifacts", []))
    new = dict((a["file"], a["sha256"]) for a in plan["artifacts"])
    changed = sorted([f for f in set(old) ^ set(new)] + [f for f in old if f in new and old[f] != new[f]])
    if existing.get("app", {}).get("sha256") != plan["app"]["sha256"]:
        changed.insert(0, "the application")
    return "differs in " + (", ".join(changed) if changed else "its fingerprint")


# --- signed manifests -------------------------------------------------------------------------
#
# builder signs each platform's manifest.json (RSA, PKCS#1 v1.5 over SHA-256); the host checks
# it with its own `openssl dgst -sha256 -verify`, which every OpenSSL from 0.9.8 to 3.x has, against
# the one public key it trusts (ROOT/.builder/trusted/builder.pub.pem, put there once by `trust`).
# Then every artifact of the plan must be in that manifest with the same sha256, and each file
# in the cache must have it: the plan travels unsigned, the manifest cannot be changed unseen.

TRUSTED_DIR = os.path.join(".builder", "trusted")
TRUSTED_KEY = "builder.pub.pem"


def trusted_key(root):
    return os.path.join(root.path, TRUSTED_DIR, TRUSTED_KEY)


def key_fingerprint(pem):
    """sha256 of the key's DER form (the base64 between the PEM lines), as builder names it."""
    import base64
    body = "".join(line.strip() for line in pem.decode("ascii", "replace").splitlines()
                   if line.strip() and not line.startswith("-----"))
    try:
        der = base64.b64decode(body.encode("ascii"))
    except (TypeError, ValueError):
        raise HostError("the offered key is not a PEM public key")
    return hashlib.sha256(der).hexdigest()


def read_bytes(path):
    handle = open(path, "rb")
    try:
        return handle.read()
    finally:
        handle.close()


def openssl(argv):
    code, output = run(["openssl"] + argv, env=clean_env())
    if code == 127:
        raise HostError("openssl is not installed on %s: it checks the signature of builder's manifests "
                        "(install the openssl package)" % socket.gethostname())
    return code, output


def cmd_trust(root, offered, replace=None):
    """Trust the public key in the file `offered` (then removed), once: the same key again is
    nothing to do; another key is refused unless `replace` (deploy --trust-new-key), and the
    key it replaces is kept beside it, named by its fingerprint."""
    root.lock()
    pem = read_bytes(offered)
    if b"PUBLIC KEY-----" not in pem or b"PRIVATE" in pem:
        raise HostError("%s is not a PEM public key" % offered)
    code, output = openssl(["rsa", "-pubin", "-noout", "-in", offered])
    if code != 0:
        raise HostError("openssl cannot read the offered key as an RSA public key: %s" % last_lines(output))
    new = key_fingerprint(pem)
    path = trusted_key(root)
    old = None
    if os.path.isfile(path):
        old = key_fingerprint(read_bytes(path))
    if old == new:
        os.remove(offered)
        return {"trusted": new, "state": "already trusted"}
    if old is not None and replace != "replace":
        os.remove(offered)
        raise HostError("%s trusts another key (sha256 %s), not this deploy's (sha256 %s): refusing to replace "
                        "it; if the signing key was rotated, deploy with --trust-new-key" % (path, old[:16], new[:16]))
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        os.makedirs(folder)
    if old is not None:
        os.rename(path, os.path.join(folder, "replaced-%s.pub.pem" % old[:16]))
    write_atomic(path, pem)
    os.remove(offered)
    return {"trusted": new, "state": "replaced %s" % old[:16] if old else "installed", "replaced": old}


def signed_files(plan):
    """The cached manifest.json and signature a release was checked against (kept while it is)."""
    signed = plan.get("signed") or {}
    return [signed[name] for name in ("manifest", "signature") if name in signed]


def check_signed(root, plan):
    """Before anything is installed: the release's manifest verifies with the trusted key, and
    lists every artifact of the plan with the plan's sha256. None when this host trusts no key
    and the plan is unsigned (a fleet that does not sign); a refusal names the file."""
    key = trusted_key(root)
    signed = plan.get("signed")
    platform = plan.get("platform")
    if not os.path.isfile(key):
        if signed:
            raise HostError("refused: the release's manifest.json is signed, but this host trusts no key (%s is "
                            "not there): let builder deploy put it there" % key)
        return None
    fingerprint = key_fingerprint(read_bytes(key))
    if not signed:
        raise HostError("refused: the manifest.json of %s is unsigned, and this host trusts only manifests "
                        "signed by the key sha256 %s (%s): publish with settings.signing_key set"
                        % (platform, fingerprint[:16], key))
    data = read_bytes(root.cache_file(signed["manifest"]))
    signature = read_bytes(root.cache_file(signed["signature"]))
    # openssl checks a private copy, so what is read below is exactly what was verified.
    scratch = tempfile.mkdtemp(prefix="verify-", dir=os.path.join(root.path, ".builder"))
    try:
        for name, content in (("manifest.json", data), ("manifest.json.sig", signature)):
            handle = open(os.path.join(scratch, name), "wb")
            try:
                handle.write(content)
            finally:
                handle.close()
        code, output = openssl(["dgst", "-sha256", "-verify", key, "-signature",
                                os.path.join(scratch, "manifest.json.sig"), os.path.join(scratch, "manifest.json")])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if code != 0 or "Verified OK" not in output:
        raise HostError("refused: manifest.json of %s (sha256 %s) is not signed by the trusted key sha256 %s: "
                        "openssl says %r" % (platform, signed["manifest"]["sha256"][:16], fingerprint[:16],
                                             last_lines(output, 1)))
    manifest = json.loads(data.decode("utf-8"))
    if manifest.get("platform") != platform:
        raise HostError("refused: the signed manifest.json is of platform %s, the release is for %s"
                        % (manifest.get("platform"), platform))
    listed = manifest.get("artifacts") or {}
    for entry in plan["artifacts"]:
        item = listed.get(entry["file"])
        if not isinstance(item, dict):
            raise HostError("refused: %s is not in the signed manifest.json of %s" % (entry["file"], platform))
        if item.get("sha256") != entry["sha256"]:
            raise HostError("refused: %s has sha256 %s in the plan, but the signed manifest.json of %s lists %s"
                            % (entry["file"], entry["sha256"], platform, item.get("sha256")))
    return {"key": fingerprint, "manifest": signed["manifest"]["sha256"], "artifacts": len(plan["artifacts"])}


def make_env(root, plan, rel):
    """A fresh virtualenv with this host's Python: venv on 3.x, the single-file virtualenv
    16.7.12 (from the plan's tools) on 2.x, where today's virtualenv no longer runs."""
    env = clean_env()
    if not PY2:
        code, output = run([sys.executable, "-m", "venv", "--without-pip", rel], env=env)
        if code == 0:
            return os.path.join(rel, "bin", "python")
        remove_tree(rel)
        if "virtualenv" not in plan.get("tools", {}):
            raise HostError("python -m venv failed here (%s) and the plan has no virtualenv tool"
                            % last_lines(output))
    tool = plan.get("tools", {}).get("virtualenv")
    if not tool:
        raise HostError("Python %d.%d needs the virtualenv tool: add virtualenv 16.7.12 to the platform's tools"
                        % sys.version_info[:2])
    unpacked = os.path.join(root.path, ".builder", "virtualenv-" + tool["sha256"][:16])
    wheel = root.cache_file(tool)  # hashed against the plan right here
    changed = tree_differs(wheel, unpacked) if os.path.isdir(unpacked) else "not unpacked yet"
    if changed:
        if os.path.isdir(unpacked):
            log("%s: %s differs from %s: unpacking it again" % (unpacked, changed, tool["file"]))
            REPAIRED.append("%s was changed on this host (%s): unpacked it again from %s (sha256 %s)"
                            % (unpacked, changed, tool["file"], tool["sha256"][:12]))
        partial = unpacked + ".tmp-%d" % os.getpid()
        unzip(wheel, partial)
        if not os.path.isfile(os.path.join(partial, "virtualenv.py")):
            remove_tree(partial)
            raise HostError("%s has no virtualenv.py: use the single-file virtualenv 16.x" % tool["file"])
        remove_tree(unpacked)
        os.rename(partial, unpacked)
    # No .pyc next to it: what runs is exactly what was compared.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    code, output = run([sys.executable, "-B", os.path.join(unpacked, "virtualenv.py"), "--no-download", "-q", rel],
                       env=env)
    if code != 0:
        raise HostError("virtualenv could not create %s: %s" % (rel, last_lines(output)))
    return os.path.join(rel, "bin", "python")


def tree_differs(archive, folder):
    """What of folder is not exactly archive's contents (a file changed, missing or added), or
    None: every member hashed against the file unpacked from it, before each use."""
    zf = zipfile.ZipFile(archive)
    try:
        expected = set()
        for info in zf.infolist():
            if info.filename.endswith("/"):
                continue
            relative = os.path.join(*[p for p in info.filename.replace("\\", "/").split("/") if p])
            expected.add(relative)
            path = os.path.join(folder, relative)
            if not os.path.isfile(path) or os.path.islink(path):
                return "%s is missing" % relative
            member = zf.open(info)
            try:
                packed = sha256_stream(member)
            finally:
                member.close()
            if packed != sha256_of(path):
                return "%s was modified" % relative
    finally:
        zf.close()
    for top, dirs, names in os.walk(folder):
        for name in names:
            relative = os.path.relpath(os.path.join(top, name), folder)
            if relative not in expected:
                return "%s was added" % relative
    return None


def site_dir(python):
    """The env's site-packages, asked of its own python (old virtualenvs have no
    site.getsitepackages; Debian patches sysconfig)."""
    code, output = run([python, "-c", "import sys, json; print(json.dumps([sys.prefix] + sys.path))"],
                       env=clean_env())
    if code != 0:
        raise HostError("the release's python does not start: %s" % last_lines(output))
    paths = json.loads(output.strip().splitlines()[-1])
    prefix = os.path.realpath(paths[0])
    for path in paths[1:]:
        real = os.path.realpath(path)
        if real.startswith(prefix + os.sep) and os.path.basename(real) in ("site-packages", "dist-packages") \
                and os.path.isdir(real):
            return real
    raise HostError("the release's virtualenv has no site-packages on its sys.path")


def install(root, plan, python, site, files):
    """Install the artifacts in the plan's order (dependencies first), offline: eggs one by
    one, wheels in one pip call (pip costs a second or two to start)."""
    installed = []
    wheels = []
    for entry in plan["artifacts"]:
        path = files[entry["sha256"]]
        if entry["format"] == "egg":
            installed.append({"file": entry["file"], "how": install_egg(path, python, site)})
        else:
            wheels.append(path)
            installed.append({"file": entry["file"], "how": "pip --no-index"})
    if wheels:
        pip = pip_command(root, plan, python, os.path.dirname(python))
        code, output = run(pip + ["install", "--no-index", "--no-deps", "--no-cache-dir"] + wheels,
                           env=clean_env(), cwd=site)
        if code != 0:
            raise HostError("pip could not install the wheels offline: %s" % last_lines(output))
    return installed


def pip_command(root, plan, python, env_bin):
    if os.path.isfile(os.path.join(env_bin, "pip")):
        return [python, "-m", "pip"]
    tool = plan.get("tools", {}).get("pip")
    if not tool:
        raise HostError("no pip in the release to install wheels with: add pip to the platform's tools")
    # pip runs from its own wheel, as the test stage does: the host needs no pip of its own.
    return [python, os.path.join(root.cache_file(tool), "pip")]


def install_egg(egg, python, site):
    """As the test stage does: easy_install --always-unzip offline where the env has it, else
    unzip into site-packages plus a .pth line. Never a zipped egg: on Python 2 its extensions
    extract into HOME, on Python 3 Cython modules do not load from it (setuptools#2071)."""
    name = os.path.basename(egg)
    target = os.path.join(site, name)
    easy = os.path.join(os.path.dirname(python), "easy_install")
    if os.path.isfile(easy):
        code, output = run([python, easy, "--always-unzip", "--no-deps", "--index-url", "file:///nonexistent",
                            "--allow-hosts", "localhost", egg], env=clean_env(), cwd=site)
        if code == 0 and os.path.isdir(target):
            return "easy_install --always-unzip"
        log("easy_install could not install %s (%s); unzipping it instead" % (name, last_lines(output, 1)))
    if os.path.lexists(target):
        remove_tree(target)
    unzip(egg, target)
    handle = open(os.path.join(site, "builder-eggs.pth"), "a")
    try:
        handle.write("./%s\n" % name)
    finally:
        handle.close()
    return "unzip + .pth"


def install_app(archive, rel, site):
    """The application's tree (or its sdist's single top folder) under rel/app, on sys.path."""
    dest = os.path.join(rel, "app")
    unpack_to = dest + ".unpack"
    os.makedirs(unpack_to)
    if archive.endswith(".zip"):
        unzip(archive, unpack_to)
    else:
        untar(archive, unpack_to)
    entries = os.listdir(unpack_to)
    single = os.path.join(unpack_to, entries[0]) if len(entries) == 1 else None
    if single and os.path.isdir(single) and not os.path.isfile(os.path.join(single, "__init__.py")):
        os.rename(single, dest)  # an sdist: its one top folder is the tree
        os.rmdir(unpack_to)
    else:
        os.rename(unpack_to, dest)
    handle = open(os.path.join(site, "zz-application.pth"), "w")
    try:
        handle.write(dest + "\n")
    finally:
        handle.close()
    return dest


def import_check(root, plan, python, app):
    """Every import of the application, tried with the release's own python, by the
    check-imports script (the one `builder check-imports` runs in the runtime image)."""
    entry = plan.get("imports")
    if not entry:
        return {"checked": False}
    script = root.cache_file(entry)
    out = os.path.join(root.path, ".builder", "imports-%d.json" % os.getpid())
    env = clean_env({"HOME": os.path.join(root.path, ".builder")})
    code, output = run([python, script, "check", app, "--out", out], env=env, cwd=app)
    try:
        result = read_json(out)
        os.remove(out)
    except (IOError, OSError, ValueError):
        raise HostError("the import check could not run (exit %s): %s" % (code, last_lines(output)))
    failed = result.get("failures") or []
    if failed:
        raise HostError("the new release cannot import what the application needs: " + "; ".join(
            "%s:%s: %s" % (f.get("file"), f.get("line"), f.get("error")) for f in failed))
    return {"checked": True, "imports": len(result.get("tried") or []),
            "optional_missing": [e.get("spec") for e in result.get("optional_missing") or []]}


def cmd_switch(root, name):
    """current -> releases/NAME by renaming a new symlink over the old one: rename(2) replaces
    it in one step on Linux and FreeBSD alike, so a reader (or a kill -9) sees the old release
    or the new one, never no `current` (unlink-then-symlink leaves a gap; `mv -T` is GNU only)."""
    root.lock()
    if root.manifest(name) is None:
        raise HostError("release %s is not complete here (no releases/%s/release.json): deploy it first"
                        % (name, name))
    before = root.current_name()
    if before == name:
        return {"from": before, "to": name, "changed": False}
    tmp = os.path.join(root.path, ".current.tmp-%d" % os.getpid())
    if os.path.lexists(tmp):
        os.remove(tmp)
    os.symlink(os.path.join("releases", name), tmp)
    os.rename(tmp, root.current)
    sync_dir(root.path)
    handle = open(root.history, "ab+")
    try:
        # A record a kill cut short has no newline: end it, or this record would be glued to it
        # and lost too.
        handle.seek(0, os.SEEK_END)
        if handle.tell() > 0:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                handle.seek(0, os.SEEK_END)
                handle.write(b"\n")
        handle.seek(0, os.SEEK_END)
        handle.write((json.dumps({"time": now(), "from": before, "to": name}) + "\n").encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())
    finally:
        handle.close()
    return {"from": before, "to": name, "changed": True}


def cmd_done(root, name):
    root.lock()
    if root.current_name() != name:
        raise HostError("current is %s, not %s" % (root.current_name(), name))
    write_atomic(root.deployed_file, json.dumps({"release": name, "time": now()}) + "\n")
    return {"deployed": name}


def cmd_prune(root, keep):
    root.lock()
    previous, unknown = root.previous()
    protected = [n for n in (root.current_name(), previous) if n]
    if unknown:
        # The lost record's "from" is most likely what the last readable one switched to.
        readable = [e for _, e in root.history_entries() if e is not None]
        if readable and readable[-1].get("to"):
            protected.append(readable[-1]["to"])
    releases = release_list(root)
    complete = [r["name"] for r in releases if r["complete"]]
    # The newest `keep` complete releases stay, and always current and previous.
    kept = set(complete[-keep:] if keep > 0 else []) | set(protected)
    removed = []
    for release in releases:
        if release["name"] not in kept:
            remove_tree(os.path.join(root.releases, release["name"]))
            removed.append(release["name"])
    # Cached files no kept release was made from go too; a later deploy copies them again.
    used = set()
    for name in os.listdir(root.releases):
        manifest = root.manifest(name) if RELEASE_NAME.match(name) else None
        for entry in (manifest or {}).get("artifacts", []) + [(manifest or {}).get("app"), (manifest or {}).get(
                "imports_script")] + list(((manifest or {}).get("tools") or {}).values()) + ((manifest or {}).get(
                "signed_files") or []):
            if entry:
                used.add(entry.get("sha256"))
    dropped = []
    for sha, name in sorted(root.cached().items()):
        if sha not in used:
            remove_tree(os.path.join(root.cache, sha))
            dropped.append(name)
    # What a killed run left half-deleted or half-made: hidden names, never a release's.
    for name in os.listdir(root.incoming) if os.path.isdir(root.incoming) else []:
        if newest_change(os.path.join(root.incoming, name)) < time.time() - STALE_SECONDS:
            remove_tree(os.path.join(root.incoming, name))
    for folder, prefix in ((root.releases, ".trash-"), (root.path, ".current.tmp-"), (root.cache, ".trash-")):
        for name in os.listdir(folder):
            if name.startswith(prefix):
                path = os.path.join(folder, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.remove(path)
    return {"removed": removed, "kept": sorted(kept), "uncached": dropped}


# --- what this host is: its fingerprint, for builder doctor -----------------------------------
# The same questions are asked of a platform's runtime image when builder publishes for it and
# of each server before a deploy; builder compares the answers. Asking writes nothing.

def read_os_release():
    """The fields of /etc/os-release (KEY=value lines), {} where there is none (CentOS 5, 6)."""
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            handle = open(path)
        except IOError:
            continue
        fields = {}
        try:
            for line in handle:
                line = line.strip()
                if "=" in line and not line.startswith("#"):
                    key, value = line.split("=", 1)
                    fields[key] = value.strip().strip("\"").strip("'")
        finally:
            handle.close()
        return fields
    return {}


def os_facts():
    """{family, id, release, name, arch}: release is VERSION_ID (Debian's "11", CentOS's "6")."""
    fields = read_os_release()
    uname = os.uname()
    ident, release, name, like = fields.get("ID"), fields.get("VERSION_ID", ""), fields.get("PRETTY_NAME"), []
    if ident:
        like = fields.get("ID_LIKE", "").split()
    elif os.path.isfile("/etc/redhat-release"):
        handle = open("/etc/redhat-release")
        try:
            name = handle.readline().strip()
        finally:
            handle.close()
        found = re.search(r"release (\d+)", name)
        ident, release, like = (name.split() or ["redhat"])[0].lower(), found and found.group(1) or "", ["rhel"]
    else:
        ident, release = uname[0].lower(), uname[2]
    if ident == "debian" or "debian" in like:
        family = "debian"
    elif ident in ("rhel", "centos", "fedora", "rocky", "almalinux", "redhat") or "rhel" in like or "fedora" in like:
        family = "redhat"
    else:
        family = ident
    facts = {"family": family, "id": ident, "release": release, "name": name or "%s %s" % (ident, release),
             "arch": uname[4]}
    if os.path.isfile("/etc/debian_version"):
        handle = open("/etc/debian_version")
        try:
            facts["point"] = handle.read().strip()
        finally:
            handle.close()
    return facts


def libc_facts():
    """{name, version} of the C library: glibc's own answer where there is one."""
    text = None
    # Python 2.7 does not know the name; 2 is _CS_GNU_LIBC_VERSION in glibc's <bits/confname.h>.
    for name in ("CS_GNU_LIBC_VERSION", 2):
        try:
            text = os.confstr(name)
        except (AttributeError, ValueError, OSError):
            continue
        if text and text.startswith("glibc "):
            break
        text = None
    if text and len(text.split()) == 2:
        name, version = text.split()
        return {"name": name, "version": version}
    if os.uname()[0] == "FreeBSD":
        return {"name": "FreeBSD libc", "version": os.uname()[2].split("-")[0]}
    import platform
    name, version = platform.libc_ver(sys.executable)
    return {"name": name or "unknown", "version": version or ""}


def python_abi():
    """The ABI compiled modules are made for: cp27mu (wide unicode) or cp27m (narrow) on 2.x,
    SOABI (cpython-311-x86_64-linux-gnu) on 3.x."""
    try:
        import sysconfig
        config = sysconfig.get_config_var
    except ImportError:
        from distutils import sysconfig as distutils_config
        config = distutils_config.get_config_var
    if PY2:
        flags = ""
        if hasattr(sys, "gettotalrefcount"):
            flags += "d"
        if config("WITH_PYMALLOC"):
            flags += "m"
        if sys.maxunicode > 0xFFFF:
            flags += "u"
        return "cp%d%d%s" % (sys.version_info[0], sys.version_info[1], flags)
    return config("SOABI") or "cp%d%d" % tuple(sys.version_info[:2])


def interpreter_facts():
    """This Python: its path as asked, version, ABI, unicode width and the sha256 of its binary."""
    binary = os.path.realpath(sys.executable)
    return {
        "path": sys.executable,
        "binary": binary,
        "version": "%d.%d.%d" % tuple(sys.version_info[:3]),
        "abi": python_abi(),
        "unicode": sys.maxunicode > 0xFFFF and "wide" or "narrow",
        "sha256": sha256_of(binary),
    }


def quiet(argv):
    """(returncode, stdout) of argv; stderr is dropped (a query for a missing package says so
    there), and a command that is not there is an empty answer."""
    try:
        proc = subprocess.Popen(argv, stdin=open(os.devnull, "rb"), stdout=subprocess.PIPE,
                                stderr=open(os.devnull, "wb"))
    except OSError:
        return 127, ""
    out = proc.communicate()[0]
    return proc.returncode, out.decode("utf-8", "replace")


PACKAGE_QUERIES = {  # family: (name and version of each installed package, its files)
    "debian": (["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${Status}\n"], ["dpkg-query", "-L"]),
    "redhat": (["rpm", "-q", "--qf", "%{NAME}\t%{VERSION}-%{RELEASE}\tinstalled\n"], ["rpm", "-ql"]),
    "freebsd": (["pkg", "query", "%n\t%v\tinstalled"], ["pkg", "query", "%Fp"]),
}
SONAME = re.compile(r"^lib.*\.so\.\d+$")


def package_facts(family, names):
    """{name: {version, sonames} or None (not installed)} with the family's package manager."""
    found = dict((name, None) for name in names)
    if not names or family not in PACKAGE_QUERIES:
        return found
    versions, files = PACKAGE_QUERIES[family]
    for line in quiet(versions + list(names))[1].splitlines():
        parts = line.split("\t")
        # dpkg's Status is "install ok installed" for an installed package ("deinstall ok
        # config-files" for one removed but not purged).
        if len(parts) == 3 and parts[0] in found and parts[2].endswith("installed"):
            found[parts[0]] = {"version": parts[1], "sonames": []}
    for name, facts in found.items():
        if facts is not None:
            paths = quiet(files + [name])[1].splitlines()
            facts["sonames"] = sorted(set([os.path.basename(p) for p in paths if SONAME.match(os.path.basename(p))]))
    return found


def cmd_fingerprint(root, names):
    """What this host is, for builder doctor; ROOT is not used (nothing is read or written there)."""
    facts = os_facts()
    return {"fingerprint": {
        "os": facts,
        "libc": libc_facts(),
        "python": interpreter_facts(),
        "packages": package_facts(facts["family"], list(names)),
    }}


def interpreter_change(manifest, current):
    """Why a release made as `manifest` (release.json) says no longer matches the interpreter
    that would run it, or None. Releases made before the interpreter was recorded are judged by
    their version alone."""
    recorded = manifest.get("interpreter")
    if not recorded:
        made = manifest.get("python")
        if made and made != current["version"]:
            return "made with Python %s, the interpreter is now %s" % (made, current["version"])
        return None
    path = recorded.get("path")
    if path != current["path"]:
        if not os.path.exists(path):
            return "made with %s, which is no longer there" % path
        now_sha = sha256_of(os.path.realpath(path))
        if now_sha != recorded.get("sha256"):
            return "made with %s (sha256 %s), which is now another binary (sha256 %s)" % (
                path, recorded.get("sha256", "")[:12], now_sha[:12])
        return None
    changes = []
    for key, what in (("version", "Python"), ("abi", "ABI")):
        if recorded.get(key) != current.get(key):
            changes.append("%s %s, now %s" % (what, recorded.get(key), current.get(key)))
    if not changes and recorded.get("sha256") != current.get("sha256"):
        changes.append("binary sha256 %s, now %s" % (recorded.get("sha256", "")[:12], current["sha256"][:12]))
    if changes:
        return "made with %s %s; the interpreter there has changed (%s)" % (
            path, recorded.get("version"), "; ".join(changes))
    return None


def stale_releases(root, current):
    """{release: why} for each complete release whose interpreter has changed under it."""
    stale = {}
    if not os.path.isdir(root.releases):
        return stale
    for name in sorted(os.listdir(root.releases)):
        manifest = root.manifest(name) if RELEASE_NAME.match(name) else None
        if manifest is not None:
            why = interpreter_change(manifest, current)
            if why:
                stale[name] = why
    return stale


def main(argv):
    usage = ("usage: host.py status ROOT | verify ROOT SHA256... | trust ROOT KEY.pem [replace]"
             " | receive ROOT [BATCH] | prepare ROOT PLAN.json | switch|done ROOT RELEASE | prune ROOT KEEP"
             " | fingerprint ROOT [PACKAGE...]")
    if len(argv) < 3:
        sys.stderr.write(usage + "\n")
        return 2
    command, args = argv[1], argv[2:]
    commands = {  # name: (fewest, most arguments after ROOT, what runs)
        "trust": (1, 2, lambda r, key, *replace: cmd_trust(r, key, *replace)),
        "status": (0, 0, lambda r: cmd_status(r)),
        "releases": (0, 0, lambda r: cmd_status(r)),
        "verify": (0, None, lambda r, *shas: cmd_verify(r, shas)),
        "receive": (0, 1, lambda r, *batch: cmd_receive(r, *batch)),
        "prepare": (1, 1, lambda r, p: cmd_prepare(r, p)),
        "switch": (1, 1, lambda r, n: cmd_switch(r, n)),
        "done": (1, 1, lambda r, n: cmd_done(r, n)),
        "prune": (1, 1, lambda r, k: cmd_prune(r, int(k))),
        "fingerprint": (0, None, lambda r, *names: cmd_fingerprint(r, names)),
    }
    fewest, most = commands.get(command, (0, 0, None))[:2]
    if command not in commands or len(args) - 1 < fewest or (most is not None and len(args) - 1 > most):
        sys.stderr.write(usage + "\n")
        return 2
    result = {"ok": True, "command": command}
    code = 0
    try:
        root = Root(args[0])
        if command not in ("status", "releases", "fingerprint"):
            root.make()
        result.update(commands[command][2](root, *args[1:]))
    except HostError as exc:
        result.update({"ok": False, "error": str(exc)})
        code = 1
    except (OSError, IOError) as exc:
        where = getattr(exc, "filename", None) or args[0]
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            why = "read-only file system" if exc.errno == errno.EROFS else "permission denied"
            result.update({"ok": False, "error": "%s is not writable on %s (%s)" % (where, socket.gethostname(), why)})
        elif exc.errno == errno.ENOSPC:
            result.update({"ok": False, "error": "%s: no space left on device on %s" % (where, socket.gethostname())})
        else:
            result.update({"ok": False, "error": "%s: %s" % (type(exc).__name__, exc)})
        code = 1
    except (ValueError, KeyError) as exc:
        result.update({"ok": False, "error": "%s: %s" % (type(exc).__name__, exc)})
        code = 1
    sys.stdout.write(RESULT_MARK + json.dumps(result, sort_keys=True) + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""One cell on a shared Vagrant machine: its own user and folder for as long as it runs, every
command as that user inside its limits, and its guest paths mapped into its folder. The
isolation it gives (and does not give) is described in builder.machines.vagrant."""
from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ...errors import BuilderError, ImageError
from ...matrix.model import Limits, size_bytes
from ..base import GUEST_ROOT, GUEST_WORK, Exec
from ..ssh import Connection

CELLS = "/var/tmp/builder"  # each cell's folder is CELLS/<its user>
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Run as the cell's user, inside its limits: argv after the two limit words. The process limit
# is -u in FreeBSD's sh and bash, -p in dash (Debian's sh).
LIMITED = '{ ulimit -u "$1" || ulimit -p "$1"; } 2>/dev/null && ulimit -v "$2" && cd / && shift 2 && exec "$@"'

# Make a cell's user and folder (as root). Debian and RHEL make the user's own group with
# useradd; FreeBSD's pw does the same. The folder: the ssh user writes its inputs, the cell's
# group reads them, no one else enters; its work folder is the cell user's alone.
OPEN_CELL = r"""
set -e
u=$1; root=$2; owner=$3
if command -v useradd >/dev/null 2>&1; then useradd -M -d "$root/work" -s /bin/sh "$u"
else pw useradd -n "$u" -d "$root/work" -s /bin/sh; fi
g=$(id -g "$u")
mkdir -p "$(dirname "$root")" && chmod 711 "$(dirname "$root")"
mkdir "$root" && chown "$owner:$g" "$root" && chmod 750 "$root"
mkdir "$root/work" && chown "$u:$g" "$root/work" && chmod 700 "$root/work"
"""

# End every process of the cell's user, then remove the user and its folder (as root).
CLOSE_CELL = r"""
u=$1; root=$2
for _ in 1 2 3 4 5 6 7 8 9 10; do pkill -KILL -U "$u" 2>/dev/null || break; sleep 0.2; done
rm -rf "$root"
if command -v userdel >/dev/null 2>&1; then userdel "$u"; else pw userdel -n "$u"; fi
"""


def memory_kb(text: str) -> int:
    """limits.memory ("2g", "512m", "1048576k", bytes) in KiB, for `ulimit -v`."""
    return max(1, size_bytes(text) // 1024)


def translate(path: str, root: str) -> str:
    """A guest path a cell was given (/builder/…, /tmp/builder-work/…) → its place in the cell's folder."""
    for prefix, inside in ((GUEST_ROOT, "builder"), (GUEST_WORK, "work")):
        if path == prefix or path.startswith(prefix + "/"):
            return f"{root}/{inside}{path[len(prefix):]}"
    return path


def translate_spec(value: object, root: str) -> object:
    """Every guest path in a spec.json, mapped into the cell's folder (structure kept)."""
    if isinstance(value, str):
        return translate(value, root)
    if isinstance(value, list):
        return [translate_spec(v, root) for v in value]
    if isinstance(value, dict):
        return {k: translate_spec(v, root) for k, v in value.items()}
    return value


class VagrantMachine:
    """A cell on a shared machine: its own user and folder, gone when the cell ends."""

    def __init__(self, connection: Connection, user: str, limits: Limits) -> None:
        self.connection = connection
        self.user = user
        self.limits = limits
        self.root = f"{CELLS}/{user}"

    def _root(self, argv: Sequence[str]) -> Exec:
        stopping()
        return self.connection.run(["sudo", "-n", *argv], timeout=300)

    def _must(self, argv: Sequence[str], what: str) -> None:
        done = self._root(argv)
        if done.returncode != 0:
            raise ImageError(f"{what} on {self.connection.dest} failed (exit {done.returncode}): {done.output.strip()[-500:]}")

    def open(self) -> None:
        owner = self.connection.dest.user or "root"
        self._must(["sh", "-c", OPEN_CELL, "sh", self.user, self.root, owner], f"making the cell user {self.user}")

    def close(self) -> None:
        if not STOPPING.is_set():  # interrupted: the machine goes as a whole, at exit
            self._root(["sh", "-c", CLOSE_CELL, "sh", self.user, self.root])

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        timeout: float | None = None,
        log: Callable[[str], None] | None = None,
    ) -> Exec:
        stopping()
        words = [translate(a, self.root) for a in argv]
        variables = [f"{k}={translate(v, self.root)}" for k, v in (env or {}).items()]
        if user in ("root", "0", "0:0"):
            command = ["sudo", "-n", "--", "env", "-i", f"PATH={PATH}", *variables, *words]
        else:  # every other request runs as the cell's own user, inside its limits
            command = [
                "sudo", "-n", "-u", self.user, "--", "env", "-i", f"PATH={PATH}", *variables,
                "sh", "-c", LIMITED, "sh", str(self.limits.pids), str(memory_kb(self.limits.memory)), *words,
            ]
        done = self.connection.run(command, timeout=timeout, log=log)
        if done.timed_out:
            # Killing ssh closes the channel but may leave the cell's processes running.
            self._root(["pkill", "-KILL", "-U", self.user])
            return Exec(-9, done.output + f"\n(stopped after {timeout} s)", timed_out=True)
        return done

    def copy_in(self, src: Path, dest: str, *, writable: bool = False, mkdirs: Sequence[str] = ()) -> None:
        """Copy a host file or folder in; the cell reads it, and writes it only if writable.
        A spec.json in it has its guest paths mapped into the cell's folder. `mkdirs`: empty
        folders under dest the cell's user may write, made after the copy."""
        stopping()
        target = translate(dest, self.root)
        spec = src / "spec.json" if src.is_dir() else None
        if spec is not None and spec.is_file():
            with tempfile.TemporaryDirectory(dir=src.parent, prefix=".vagrant-") as folder:
                copy = Path(folder) / src.name
                shutil.copytree(src, copy, copy_function=_link_or_copy)
                (copy / "spec.json").unlink()
                data = translate_spec(json.loads(spec.read_text()), self.root)
                (copy / "spec.json").write_text(json.dumps(data, indent=2, sort_keys=True))
                self.connection.put(copy, target)
        else:
            self.connection.put(src, target)
        if writable:
            self._must(["chown", "-hR", f"{self.user}:", target], f"giving {target} to {self.user}")
        else:
            self.connection.run(["chmod", "-R", "a+rX,go-w", target], timeout=300)
        for folder in mkdirs:
            self.mkdir(folder)

    def mkdir(self, dest: str) -> None:
        """An empty folder the cell's user may write: the only writable place it gets besides its work folder."""
        target = translate(dest, self.root)
        self._must(["sh", "-c", 'mkdir -p "$1" && chown "$2:" "$1"', "sh", target, self.user], f"making {target}")

    def copy_out(self, src: str, dest: Path) -> None:
        """Copy a cell folder's contents into dest. The folder is first given to the ssh user
        (links are not followed), so nothing the cell made unreadable stops the copy."""
        stopping()
        source = translate(src, self.root)
        owner = self.connection.dest.user or "root"
        self._root(["chown", "-hR", owner, source])
        self.connection.run(["chmod", "-R", "u+rwX", source], timeout=300)
        self.connection.get(source, dest, limit=self.limits.output_bytes)


def _link_or_copy(src: str, dest: str) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


# Set on Ctrl-C: cells stop talking to machines at once instead of waiting on ones being removed.
STOPPING = threading.Event()


def interrupt() -> None:
    """Ctrl-C (or TERM): end the vagrant and ssh commands this process is waiting on, and make
    cells give up rather than start new ones. The machines are destroyed at exit (Fleet.down)."""
    STOPPING.set()
    for child in _descendants(os.getpid()):  # vagrant, and the docker or ssh commands it runs
        try:
            os.kill(child, signal.SIGTERM)
        except OSError:
            pass


def _descendants(pid: int) -> list[int]:
    """This process's children, theirs and so on, from /proc (the host is Linux)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        # pid (comm) state ppid …: comm may hold spaces and parentheses, so split after the last ")".
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1].isdigit():
            parents[int(entry)] = int(fields[1])
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found += children
        todo += children
    return found


def stopping() -> None:
    if STOPPING.is_set():
        raise BuilderError("interrupted")

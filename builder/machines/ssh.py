"""One OpenSSH connection per remote machine, reused by every command and copy.

The vagrant backend and deploy both talk to machines this way. Each `Connection` starts one
master (`ControlMaster`) on a private socket; commands and tar streams go through it, so a
command costs a channel on an open connection rather than a new TCP handshake and login
(`vagrant ssh` costs about 2 s a command). The remote side needs only `sh` and `tar`, which
CentOS 5, FreeBSD and every Linux have.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import IO, cast

from .. import runner
from ..errors import BuilderError, CommandError, OutputTooLarge, TransportError
from ..matrix.hosts import Destination
from .base import Exec

# A master that outlives builder (kill -9) goes away by itself after this many idle seconds.
PERSIST_SECONDS = 120
# ssh's own failures (cannot connect, the master is gone) exit with 255.
SSH_FAILED = 255


def remote_command(argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | None = None) -> str:
    """The string the remote `sh -c` runs: every word quoted, so nothing is split or expanded."""
    words = [shlex.quote(a) for a in argv]
    if env:
        words = ["env", *(shlex.quote(f"{k}={v}") for k, v in env.items()), *words]
    command = " ".join(words)
    return f"cd {shlex.quote(cwd)} && {command}" if cwd else command


class Connection:
    """A context manager: one ssh master to `dest`; run/put/get go through it."""

    def __init__(self, dest: Destination, *, connect_timeout: float = 15.0) -> None:
        self.dest = dest
        self.connect_timeout = connect_timeout
        self._dir: str | None = None

    # -- the connection ------------------------------------------------------------------

    def _options(self) -> list[str]:
        args = [
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={max(1, round(self.connect_timeout))}",
            "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=4",
            "-o", "LogLevel=ERROR",
        ]
        if self.dest.user:
            args += ["-l", self.dest.user]
        if self.dest.port:
            args += ["-p", str(self.dest.port)]
        if self.dest.identity:
            args += ["-i", str(self.dest.identity), "-o", "IdentitiesOnly=yes"]
        for key, value in self.dest.options:
            args += ["-o", f"{key}={value}"]
        if self._dir:
            args += ["-o", f"ControlPath={self._socket}", "-o", "ControlMaster=no"]
        return args

    @property
    def _socket(self) -> str:
        assert self._dir is not None
        return os.path.join(self._dir, "master")

    def argv(self, remote: Sequence[str] = (), *, tty: bool = False) -> list[str]:
        """The ssh command line for `remote` (an interactive login shell when empty)."""
        return self._ssh("-t" if tty else "-T", remote=remote_command(remote) if remote else None)

    def _ssh(self, *flags: str, remote: str | None = None, master: bool = True) -> list[str]:
        """Every ssh command line builder runs: options, then `--`, then the destination, so that
        nothing in a destination can ever be read as an option."""
        options = self._options() if master else self._options_without_master()
        return ["ssh", *options, *flags, "--", self.dest.host, *([remote] if remote is not None else [])]

    def __enter__(self) -> Connection:
        # A short private folder: the socket path must fit in sun_path (about 104 bytes).
        self._dir = tempfile.mkdtemp(prefix="builder-ssh-")
        errors = os.path.join(self._dir, "errors")
        master = self._ssh("-o", f"ControlPath={self._socket}", "-o", "ControlMaster=yes",
                           "-o", f"ControlPersist={PERSIST_SECONDS}", "-N", "-f", master=False)
        # -f backgrounds the master once logged in; its stderr goes to a file, not a pipe we
        # would wait on forever.
        with open(errors, "wb") as err:
            try:
                returncode = runner.call(master, timeout=self.connect_timeout + 30, stderr=err)
            except subprocess.TimeoutExpired:
                self._cleanup()
                raise TransportError(
                    f"ssh to {self.dest} did not log in within {self.connect_timeout + 30:.0f} s",
                    hint="check that the machine is up and its sshd answers on that port",
                ) from None
        if returncode != 0:
            message = Path(errors).read_text(errors="replace").strip() or f"ssh exited with {returncode}"
            self._cleanup()
            raise TransportError(f"cannot connect to {self.dest}: {message}", hint=_hint(message))
        return self

    def _options_without_master(self) -> list[str]:
        saved, self._dir = self._dir, None
        try:
            return self._options()
        finally:
            self._dir = saved

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._dir is None:
            return
        runner.call(self._ssh("-O", "exit"), timeout=30)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None

    def alive(self) -> bool:
        if self._dir is None:
            return False
        return runner.call(self._ssh("-O", "check"), timeout=30) == 0

    # -- commands ------------------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        input: bytes | None = None,
        timeout: float | None = None,
        log: Callable[[str], None] | None = None,
        cwd: str | None = None,
    ) -> Exec:
        """Run argv remotely; stdout and stderr together. A lost connection is a TransportError.

        On timeout the local end is killed and the channel closes; a remote command that ignores
        its closed output may run on, so callers that need a hard limit on the remote side
        bound it there too.
        """
        self._require_open()
        proc = runner.start(
            self._ssh("-T", remote=remote_command(argv, env, cwd)),
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        output, timed_out = _collect(proc, input, timeout, log)
        if proc.returncode == SSH_FAILED and not self.alive():
            raise TransportError(
                f"the connection to {self.dest} was lost while running: {' '.join(argv)}",
                hint="check that the machine is still up; rerun when it is",
            )
        return Exec(proc.returncode, output, timed_out)

    def put(self, src: Path, dest: str) -> None:
        """Copy a host file to the remote path dest, or a host folder's contents into dest."""
        self._require_open()
        target = PurePosixPath(dest)
        folder, name = (target, ".") if src.is_dir() else (target.parent, target.name)
        script = f"mkdir -p -- {shlex.quote(str(folder))} && tar -xf - -C {shlex.quote(str(folder))}"
        proc = runner.start(
            self._ssh("-T", remote=script), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        reader = _Reader(proc)
        assert proc.stdin is not None
        try:
            # ustar/GNU rather than pax: the tar of CentOS 5 and of busybox read them.
            with tarfile.open(fileobj=proc.stdin, mode="w|", format=tarfile.GNU_FORMAT) as tar:
                tar.add(str(src), arcname=name, filter=_plain)
        except BrokenPipeError:
            pass
        finally:
            proc.stdin.close()
        proc.wait()
        output = reader.text()
        if proc.returncode == SSH_FAILED and not self.alive():
            raise TransportError(f"the connection to {self.dest} was lost while copying {src.name} to {dest}",
                                 hint="check that the machine is still up; rerun when it is")
        if proc.returncode != 0:
            # The connection is fine: the remote side refused (a read-only or full file system,
            # no permission). That is the machine's answer, not a transport failure.
            raise CommandError(["tar", "-xf", "-", "-C", str(folder)], proc.returncode, output,
                               where=f"{self.dest} (copying {src.name} to {dest})")

    def get(self, src: str, dest: Path, limit: int | None = None) -> None:
        """Copy a remote folder's contents into dest, or a remote file to the path dest; more than
        `limit` bytes of tar stream is refused (OutputTooLarge) and nothing of it kept."""
        self._require_open()
        source = PurePosixPath(src)
        script = (
            f"cd -- {shlex.quote(str(source))} 2>/dev/null && exec tar -cf - . || "
            f"exec tar -cf - -C {shlex.quote(str(source.parent))} {shlex.quote('./' + source.name)}"
        )
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".get-") as spool:
            with tempfile.TemporaryFile() as errors:
                proc = runner.start(self._ssh("-T", remote=script), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
                assert proc.stdout is not None
                try:
                    with tarfile.open(fileobj=cast(IO[bytes], _Capped(proc.stdout, src, limit)), mode="r|") as tar:
                        # The "data" filter refuses absolute names, links out of the folder and
                        # devices: the remote side cannot write outside dest.
                        tar.extractall(spool, filter="data")
                except OutputTooLarge:
                    proc.kill()
                    proc.wait()
                    raise
                except tarfile.FilterError as exc:
                    proc.kill()
                    proc.wait()
                    raise BuilderError(
                        f"refused {self.dest}:{src}: {exc}; nothing of it was kept",
                        hint="the remote folder holds a link out of it or a special file",
                    ) from exc
                except tarfile.ReadError as exc:
                    proc.wait()
                    errors.seek(0)
                    raise TransportError(
                        f"copying {self.dest}:{src} failed: {errors.read().decode(errors='replace').strip() or exc}"
                    ) from None
                proc.wait()
            if proc.returncode != 0:
                raise TransportError(f"copying {self.dest}:{src} failed (ssh exit code {proc.returncode})")
            single = Path(spool) / source.name
            entries = os.listdir(spool)
            if entries == [source.name] and single.is_file():
                os.replace(single, dest)
                return
            dest.mkdir(exist_ok=True)
            for entry in entries:
                os.replace(Path(spool) / entry, dest / entry)

    def _require_open(self) -> None:
        if self._dir is None:
            raise RuntimeError("use the Connection as a context manager before running commands")


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Files arrive owned by whoever unpacks them, not by our uid."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _hint(message: str) -> str:
    lowered = message.lower()
    if "host key verification failed" in lowered or "no matching host key" in lowered:
        return "add the host's key to known_hosts (ssh-keyscan -p PORT HOST), or set StrictHostKeyChecking=accept-new in its ssh options"
    if "permission denied" in lowered:
        return "check the user and the key (ssh -i KEY USER@HOST true must work without a password)"
    if "connection refused" in lowered or "timed out" in lowered or "no route" in lowered:
        return "check that the machine is up and its sshd listens on that port"
    return "run the same ssh command by hand with -v to see why"


class _Reader:
    """Drains a process's output in a thread so that a full pipe never blocks it."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Callable[[str], None] | None = None) -> None:
        self._chunks: list[str] = []
        self._log = log
        self._thread = threading.Thread(target=self._drain, args=(proc,), daemon=True)
        self._thread.start()

    def _drain(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace")
            self._chunks.append(line)
            if self._log:
                self._log(line.rstrip("\n"))

    def text(self, timeout: float | None = None) -> str:
        self._thread.join(timeout)
        return "".join(self._chunks)


def _feed(proc: subprocess.Popen[bytes], data: bytes) -> None:
    assert proc.stdin is not None
    try:
        proc.stdin.write(data)
        proc.stdin.close()
    except (BrokenPipeError, ValueError, OSError):
        pass


def _collect(
    proc: subprocess.Popen[bytes], data: bytes | None, timeout: float | None, log: Callable[[str], None] | None
) -> tuple[str, bool]:
    reader = _Reader(proc, log)
    if data is not None:
        # Fed from a thread: a remote command that reads slowly (or never) must not stop the
        # timeout below from being enforced.
        threading.Thread(target=_feed, args=(proc, data), daemon=True).start()
    timed_out = False
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()
        proc.wait()
    # The reader ends when the pipe closes; after a kill, give it a moment, not forever.
    deadline = time.monotonic() + 5
    return reader.text(max(0.0, deadline - time.monotonic())), timed_out


class _Capped:
    """A stream that raises OutputTooLarge once more than `limit` bytes have been read from it."""

    def __init__(self, stream: IO[bytes], src: str, limit: int | None) -> None:
        self.stream, self.src, self.limit, self.size = stream, src, limit, 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.size += len(data)
        if self.limit is not None and self.size > self.limit:
            raise OutputTooLarge(self.src, self.limit)
        return data

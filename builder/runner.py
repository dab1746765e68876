"""The one funnel for commands on the host: argv lists in, CommandError with the output tail out.

run() waits for a command and returns its output; start() and call() are for the ssh transport,
which streams (a tar over a pipe, a log line by line) or needs only the exit status. All three turn
a program missing from PATH into a CommandError that says what to install.
"""
from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from .errors import CommandError


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> str:
    """Run argv, return its combined output; raise CommandError when it fails or times out."""
    try:
        done = subprocess.run(
            list(argv),
            cwd=cwd,
            env=None if env is None else dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise _not_found(argv) from exc
    except subprocess.TimeoutExpired as exc:
        output = (exc.output or b"").decode("utf-8", "replace")
        raise CommandError(argv, -9, output + f"\n(timed out after {timeout} s)") from exc
    output = done.stdout.decode("utf-8", "replace")
    if done.returncode != 0:
        raise CommandError(argv, done.returncode, output)
    return output


_Stream = int | IO[bytes] | None

# What provides each program builder runs on the host, for the hint when it is missing.
_PROVIDED_BY = {"ssh": "install OpenSSH's client (Debian: openssh-client; bootstrap.sh does)"}


def start(argv: Sequence[str], *, stdin: _Stream, stdout: _Stream, stderr: _Stream) -> subprocess.Popen[bytes]:
    """Start argv with the given streams, for a caller that reads or feeds it as it runs."""
    try:
        return subprocess.Popen(list(argv), stdin=stdin, stdout=stdout, stderr=stderr)
    except FileNotFoundError as exc:
        raise _not_found(argv) from exc


def call(argv: Sequence[str], *, timeout: float, stderr: _Stream = subprocess.DEVNULL) -> int:
    """Run argv with no input and its output dropped (or stderr to a file); its exit status.
    subprocess.TimeoutExpired reaches the caller, which knows what a timeout means for it."""
    try:
        done = subprocess.run(
            list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise _not_found(argv) from exc
    return done.returncode


def _not_found(argv: Sequence[str]) -> CommandError:
    program = Path(argv[0]).name
    return CommandError(argv, 127, f"{argv[0]}: not found on PATH", hint=_PROVIDED_BY.get(program, f"install {program}"))

"""The one funnel for commands on the host: argv lists in, CommandError with the output tail out."""
from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

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
        raise CommandError(argv, 127, f"{argv[0]}: not found on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        output = (exc.output or b"").decode("utf-8", "replace")
        raise CommandError(argv, -9, output + f"\n(timed out after {timeout} s)") from exc
    output = done.stdout.decode("utf-8", "replace")
    if done.returncode != 0:
        raise CommandError(argv, done.returncode, output)
    return output

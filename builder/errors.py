"""Errors builder raises. Only the CLI prints them; each class has its own exit code."""
from __future__ import annotations

from collections.abc import Sequence


class BuilderError(Exception):
    """A failure the user can act on: the message says what happened and what to do."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ConfigError(BuilderError):
    """matrix.yaml (or a selection on the command line) is invalid. Nothing has run."""

    exit_code = 2

    def __init__(self, message: str, location: str | None = None, hint: str | None = None) -> None:
        self.location = location
        super().__init__(f"{location}: {message}" if location else message, hint)


class SelectionError(ConfigError):
    """A --platform/--package/--cell pattern matched nothing or named an unknown thing."""


class UsageError(ConfigError):
    """An argument on the command line is not valid (a release name, say). Nothing has run and
    nothing was connected to."""


class FetchError(BuilderError):
    """A source could not be fetched, or its sha256 did not match the pin."""

    exit_code = 3


class EngineError(BuilderError):
    """The Docker engine (or Vagrant) is not reachable or refused an operation."""

    exit_code = 4


class ImageError(BuilderError):
    """A base or platform image could not be made."""

    exit_code = 5


class LockError(BuilderError):
    """Another builder run holds the output folder."""

    exit_code = 6


class CommandError(BuilderError):
    """A command (on the host or in a guest) exited non-zero."""

    exit_code = 7

    def __init__(
        self, argv: Sequence[str], returncode: int, output: str, where: str = "host", hint: str | None = None
    ) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output
        tail = "\n".join("    " + line for line in output.rstrip().splitlines()[-20:])
        super().__init__(
            f"command failed on {where} with exit code {returncode}: {' '.join(self.argv)}"
            + (f"\n  output (last lines):\n{tail}" if tail else ""),
            hint=hint,
        )


class OutputTooLarge(BuilderError):
    """A guest handed back more than its platform's limits.output: nothing of it is kept."""

    def __init__(self, src: str, limit: int) -> None:
        mib = limit / 1024**2
        super().__init__(
            f"the guest's {src} is over limits.output ({mib:g} MiB): refused, nothing of it kept",
            hint="if the package's artifacts really are that big, raise limits.output in the platform's entry of the matrix file",
        )


class TransportError(BuilderError):
    """An ssh connection to a machine or server could not be made, or was lost."""

    exit_code = 8


class ImportsFailed(BuilderError):
    """An application's imports fail in its platform's environment; the table says which."""

    exit_code = 9


class NotPublished(BuilderError):
    """A requirement has no published artifact that satisfies it, or an artifact does not match
    its manifest. Nothing was installed."""

    exit_code = 11


class CellsFailed(BuilderError):
    """Some selected cells did not pass; the summary table says which and why."""

    exit_code = 1


class NotReproducible(BuilderError):
    """verify --rebuild: a published artifact did not rebuild to the same bytes."""

    exit_code = 13


class DeployError(BuilderError):
    """A deploy, rollback or release listing could not be done; the message names the host and step."""

    exit_code = 10


class HostMismatch(BuilderError):
    """A server is not what its platform's runtime image is (another OS release or architecture,
    an older C library, another Python or ABI, a missing run-time OS package): nothing was copied
    to it. The message names the host, the difference and the fix."""

    exit_code = 12

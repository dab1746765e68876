"""The machine protocol every backend implements, and the paths every guest shares.

The lowest module of builder.machines: the backends, the stages and the tests import it; it
imports no backend."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from ..matrix.model import Limits, Matrix, Platform

Role = Literal["build", "runtime"]

# Where every guest keeps builder's inputs (read-only) and does its work (writable).
GUEST_ROOT = "/builder"
GUEST_WORK = "/tmp/builder-work"


@dataclass(frozen=True)
class Images:
    """What a platform's cells run in: one id per role, stable while the inputs are."""

    build: str
    runtime: str
    # The platform's interpreter packages (matrix.yaml interpreter:), runtime package first, and
    # what they were built from and how they were tested; the images were made from them.
    packages: tuple[Path, ...] = ()
    # Not part of the value's identity (the ids and package files are): kept out of hash and ==.
    packages_about: Mapping[str, object] | None = field(default=None, hash=False, compare=False)


@dataclass(frozen=True)
class Exec:
    """The result of one command in a machine: its exit code and its combined output."""

    returncode: int
    output: str
    timed_out: bool = False
    out_of_memory: bool = False  # the kernel killed a process of it over limits.memory


class Machine(Protocol):
    """A running guest. Commands are argv lists, never shell strings built by hand."""

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        timeout: float | None = None,
        log: Callable[[str], None] | None = None,
    ) -> Exec: ...

    def copy_in(self, src: Path, dest: str, *, writable: bool = False, mkdirs: Sequence[str] = ()) -> None:
        """Copy a host file or folder to dest (read-only to the guest's user unless writable),
        and make `mkdirs` (paths under dest) empty folders that user may write."""

    def copy_out(self, src: str, dest: Path) -> None: ...

    def mkdir(self, path: str) -> None:
        """Make a folder the guest's user can write (for its output)."""


class Backend(Protocol):
    # True when every guest of a platform sees the same paths (/builder, /tmp/builder-work):
    # then an environment made in one guest can be unpacked in another and is the same there.
    same_paths: bool

    def check(self, matrix: Matrix, platform: Platform) -> None:
        """Raise ImageError, saying how to provide it, when the platform's machines cannot be made
        on this machine (a base image that cannot be pulled, a Vagrant box that is not there).
        Quick, and before anything is fetched: nothing of the platform is worth fetching then."""

    def prepare(
        self, matrix: Matrix, platform: Platform, files: Mapping[str, Path], log: Callable[[str], None]
    ) -> Images:
        """Make (or reuse) the platform's build and runtime machines' images.

        files: the verified host files by sha256 (the platform's `context:` pins among them).
        """

    def machine(
        self, platform: Platform, images: Images, role: Role, limits: Limits, label: str
    ) -> AbstractContextManager[Machine]:
        """A fresh guest with no network; gone when the context ends."""

    def leftovers(self, platforms: Sequence[Platform] = ()) -> list[str]:
        """Remove what runs killed before their clean-up left of this backend's guests (on the
        engines of `platforms`, for the docker backend); name it."""

    def interactive(
        self, platform: Platform, images: Images, role: Role, mounts: Mapping[str, str], env: Mapping[str, str]
    ) -> list[str]:
        """The command that opens a shell in a fresh guest of that role, as a cell's guest is."""

"""Host-side image inputs: debootstrap bases and the digest that decides when to rebuild."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from .. import runner
from ..errors import CommandError, ConfigError, ImageError
from ..matrix.model import Matrix, Platform
from ..matrix.plan import build_packages, runtime_packages

BASE_REPOSITORY = "builder/base"


def base_tag(suite: str) -> str:
    return f"{BASE_REPOSITORY}:{suite}"


def debootstrap_tarball(suite: str, mirror: str | None, work: Path) -> Path:
    """A minbase root filesystem of a Debian suite as a tar file, ready for `docker import`.

    Without a mirror setting debootstrap uses its own default, so no mirror is named here.
    """
    if shutil.which("debootstrap") is None:
        raise ImageError(
            f"debootstrap is needed to make the {suite} base image and is not installed",
            hint="apt-get install debootstrap (the README's set-up command does it)",
        )
    if os.geteuid() != 0:
        raise ImageError(f"making the {suite} base image with debootstrap needs root", hint="run as root once")
    work.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f"rootfs-{suite}-", dir=work))
    # Its own name: platforms on two engines may make the same suite's base at the same time.
    fd, name = tempfile.mkstemp(prefix=f"{suite}-", suffix=".tar", dir=work)
    os.close(fd)
    tarball = Path(name)
    try:
        argv = ["debootstrap", "--variant=minbase", suite, str(root)]
        if mirror:
            argv.append(mirror)
        try:
            runner.run(argv, timeout=1800)
        except CommandError as exc:
            raise ImageError(
                f"debootstrap {suite} failed (exit {exc.returncode})",
                hint="check that the Debian mirror is reachable, or set settings.debian_mirror "
                f"/ BUILDER_DEBIAN_MIRROR\n{exc.output[-2000:]}",
            ) from exc
        runner.run(["tar", "-C", str(root), "-cf", str(tarball), "."])
    except BaseException:
        tarball.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return tarball


def build_context(matrix: Matrix, platform: Platform, files: Mapping[str, Path], packages: Sequence[Path] = ()) -> Path:
    """images/<platform>/ plus the platform's verified context files, laid out for `docker build`.

    The Dockerfile COPYs a context file by its name (e.g. Python-2.7.18.tgz), and the
    interpreter packages by the names build_args gives (INTERPRETER, INTERPRETER_DEV).
    """
    dockerfile(platform)
    target = matrix.settings.work / "contexts" / platform.name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(platform.image_dir, target, symlinks=False)
    for pin in platform.context:
        source = files[pin.sha256]
        shutil.copyfile(source, target / source.name)
    for package in packages:
        shutil.copyfile(package, target / package.name)
    return target


def hash_folder(digest: hashlib._Hash, folder: Path) -> None:
    """Feed every file under folder (its relative name, then its bytes) into digest."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")


def context_digest(
    matrix: Matrix, platform: Platform, base_id: str, packages: Sequence[Path] = (), lists: bool = True
) -> str:
    """Everything an image build reads: the context folder, the base, the interpreter packages
    (by their bytes) and the package lists (without `lists`: the interpreter image's inputs)."""
    digest = hashlib.sha256()
    for pin in platform.context:
        digest.update(pin.sha256.encode() + b"\0")
    hash_folder(digest, platform.image_dir)
    parts = [base_id]
    if lists:
        parts += [" ".join(runtime_packages(matrix, platform)), " ".join(build_packages(matrix, platform))]
    parts += [hashlib.sha256(p.read_bytes()).hexdigest() for p in packages]
    for part in parts:
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()


def build_args(matrix: Matrix, platform: Platform, base_ref: str, packages: Sequence[Path] = ()) -> dict[str, str]:
    args = {
        "BASE": base_ref,
        "RUNTIME_PACKAGES": " ".join(runtime_packages(matrix, platform)),
        "BUILD_PACKAGES": " ".join(build_packages(matrix, platform)),
    }
    if packages:
        args["INTERPRETER"] = packages[0].name
        args["INTERPRETER_DEV"] = packages[1].name if len(packages) > 1 else packages[0].name
    return args


def require_dockerfiles(platforms: Iterable[Platform]) -> None:
    """Before anything runs: each docker platform about to be used has its Dockerfile."""
    for platform in platforms:
        if platform.backend == "docker" and not (platform.image_dir / "Dockerfile").is_file():
            raise ConfigError(
                f"platforms[{platform.name}]: no Dockerfile at {platform.image_dir / 'Dockerfile'}",
                location=platform.location or None,
                hint="create it with two targets, `runtime` and `build` (start from images/debian12/Dockerfile), "
                "or point image: at the folder that holds it",
            )


def dockerfile(platform: Platform) -> Path:
    path = platform.image_dir / "Dockerfile"
    if not path.is_file():
        raise ImageError(
            f"platform {platform.name} has no Dockerfile at {path}",
            hint=f"create it with two targets, `runtime` and `build` (copy images/debian12/Dockerfile as a start), "
            f"or set image: of the platform at {platform.location}",
        )
    return path

"""Releases of a project on the index's simple API, and the one each platform's Python can take."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from ..errors import BuilderError
from ..fetch import IndexFile, index_files

SDIST_ENDINGS = (".tar.gz", ".tar.bz2", ".tgz", ".zip")
MAX_INSPECTED = 8  # sdists read for their python_requires when the index gives none


class AddError(BuilderError):
    """add could not derive an entry; nothing was written."""

    exit_code = 14


@dataclass(frozen=True)
class Release:
    version: Version
    text: str  # the version as the file name writes it
    sdist: IndexFile


def releases(index_url: str, name: str) -> list[Release]:
    """The project's releases that have an sdist, newest first (final releases before pre-releases
    only when there are no final ones). A project with files but no sdist is an AddError."""
    files = index_files(index_url, name)
    found: dict[Version, Release] = {}
    for f in files:
        if f.yanked or not f.filename.endswith(SDIST_ENDINGS) or not f.sha256:
            continue
        try:
            _, version = parse_sdist_filename(f.filename)
        except (InvalidSdistFilename, InvalidVersion):
            continue
        text = f.filename[: -len(next(e for e in SDIST_ENDINGS if f.filename.endswith(e)))].rsplit("-", 1)[-1]
        if version not in found or f.filename.endswith(".tar.gz"):
            found[version] = Release(version, text, f)
    if not found:
        shown = ", ".join(f.filename for f in files[-5:]) or "no files at all"
        raise AddError(
            f"{name} has no sdist on the index {index_url}: {len(files)} file(s), e.g. {shown}",
            hint="builder builds from sdists (source) only; a wheel-only project cannot be built per platform",
        )
    ordered = sorted(found.values(), key=lambda r: r.version, reverse=True)
    finals = [r for r in ordered if not r.version.is_prerelease]
    return finals or ordered


def supports(spec: str | None, python: str) -> bool | None:
    if not spec:
        return None
    try:
        return SpecifierSet(spec).contains(python, prereleases=True)
    except InvalidSpecifier:
        return None


def pick(
    candidates: Sequence[Release], python: str, wanted: str | None, declared: Callable[[Release], bool | None]
) -> tuple[Release, str]:
    """The newest release for Python `python` (e.g. "2.7"), and why it was chosen.

    `declared` reads an sdist's own python_requires/classifiers when the index gives no
    requires-python (old releases); a release that says nothing is taken, and the probe build
    decides."""
    if wanted is not None:
        chosen = [r for r in candidates if r.text == wanted or str(r.version) == wanted]
        if not chosen:
            near = ", ".join(r.text for r in candidates[:8])
            raise AddError(f"no sdist of version {wanted} on the index", hint=f"releases with an sdist: {near}")
        release = chosen[0]
        ok = supports(release.sdist.requires_python, python)
        if ok is False:
            raise AddError(f"{release.sdist.filename} requires Python {release.sdist.requires_python}, "
                           f"not the platform's {python}", hint="name another version, or leave ==VERSION out")
        return release, "as asked"
    inspected = 0
    refused: list[str] = []
    for release in candidates:
        ok = supports(release.sdist.requires_python, python)
        if ok is True:
            return release, f"requires-python {release.sdist.requires_python}"
        if ok is None and inspected < MAX_INSPECTED:
            inspected += 1
            ok = declared(release)
            if ok is not False:
                return release, "its sdist's python_requires/classifiers" if ok else "it declares no Python: the probe decides"
        if ok is False:
            refused.append(f"{release.text} ({release.sdist.requires_python or 'by its sdist'})")
        if ok is None:
            return release, "it declares no Python: the probe decides"
    raise AddError(
        f"no release with an sdist supports Python {python}",
        hint="refused: " + ", ".join(refused[:8]) + (" …" if len(refused) > 8 else ""),
    )


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    sha256: str
    filename: str


def _wheel_fits(filename: str, python: str) -> bool:
    try:
        _, _, _, tags = parse_wheel_filename(filename)
    except (InvalidWheelFilename, InvalidVersion):
        return False
    major, minor = python.split(".")[:2]
    cp = f"cp{major}{minor}"
    for tag in tags:
        if tag.interpreter not in (f"py{major}", f"py{major}{minor}", cp):
            continue
        if tag.platform == "any" and tag.abi in ("none", "abi3"):
            return True
        glibc = tag.platform.startswith(("manylinux", "linux")) and tag.platform.endswith("x86_64")
        if glibc and tag.abi in (cp, f"{cp}m", f"{cp}mu", "abi3", "none") and not tag.platform.startswith("musllinux"):
            return True
    return False


def build_wheel(index_url: str, requirement: str, python: str) -> Wheel:
    """The newest wheel of `requirement` that installs on Python `python`, pure ones first."""
    try:
        req = Requirement(requirement)
    except InvalidRequirement as exc:
        raise AddError(f"cannot read the build requirement {requirement!r}: {exc}") from exc
    files = index_files(index_url, req.name)
    best: tuple[Version, bool, IndexFile] | None = None
    for f in files:
        if f.yanked or not f.filename.endswith(".whl") or not f.sha256 or not _wheel_fits(f.filename, python):
            continue
        if supports(f.requires_python, python) is False:
            continue
        version = parse_wheel_filename(f.filename)[1]
        if version.is_prerelease or not req.specifier.contains(version, prereleases=False):
            continue
        pure = f.filename.endswith("-none-any.whl")
        if best is None or (version, pure) > (best[0], best[1]):
            best = (version, pure, f)
    if best is None:
        raise AddError(f"no wheel of {requirement} installs on Python {python}",
                       hint=f"pin one by hand in build_requires, or give the platform's OS package of {req.name}")
    return Wheel(req.name, str(best[0]), str(best[2].sha256), best[2].filename)


def marker_ok(requirement: Requirement, python: str, full: str) -> bool:
    if requirement.marker is None:
        return True
    env = {"python_version": python, "python_full_version": full, "sys_platform": "linux", "platform_system": "Linux",
           "os_name": "posix", "implementation_name": "cpython", "platform_python_implementation": "CPython",
           "platform_machine": "x86_64", "extra": ""}
    try:
        return bool(requirement.marker.evaluate(env))
    except Exception:  # noqa: BLE001 - an unknown marker variable: keep the requirement, the probe decides
        return True


def same_project(a: str, b: str) -> bool:
    return canonicalize_name(a) == canonicalize_name(b)

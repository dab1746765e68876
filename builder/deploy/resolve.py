"""Requirements to published artifacts, before any host is touched.

Each requirement resolves to a published (so passing) artifact of the target's platform and
format whose file still has the sha256 the manifest records; its own metadata (an egg's
EGG-INFO/requires.txt, a wheel's Requires-Dist) adds its dependencies, transitively. What is
missing is named with the `builder all` selection that builds it.
"""
from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import InvalidMarker, Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .._index import ArtifactEntry, Manifest
from ..errors import DeployError
from ..fetch import sha256_file
from ..model import Format, Matrix
from ..publish import read_manifest


@dataclass(frozen=True)
class Artifact:
    file: str
    path: Path
    sha256: str
    format: Format
    package: str
    version: str
    cell: str
    finished_at: str

    def plan_entry(self) -> dict[str, str]:
        return {"file": self.file, "sha256": self.sha256, "format": self.format, "package": self.package,
                "version": self.version, "cell": self.cell, "built": self.finished_at}


def resolve(matrix: Matrix, platform: str, fmt: Format, requirements: Iterable[str]) -> list[Artifact]:
    """The artifacts to install, dependencies before what needs them; DeployError if any is missing."""
    output = matrix.settings.output
    manifest = read_manifest(output, platform) or Manifest(platform, {}, {})
    environment = _marker_environment(manifest, matrix.platform(platform).family == "freebsd")
    chosen: dict[str, Artifact] = {}
    order: list[str] = []
    missing: list[str] = []
    tampered: list[str] = []

    def visit(text: str, wanted_by: str | None, trail: tuple[str, ...]) -> None:
        requirement = Requirement(text)
        if requirement.marker is not None and not _applies(requirement.marker, environment):
            return
        key = canonicalize_name(requirement.name)
        if key in chosen:
            if not requirement.specifier.contains(chosen[key].version, prereleases=True):
                missing.append(f"{text} (needed by {wanted_by or 'the target'}; {chosen[key].version} is chosen)")
            return
        if key in trail:
            return
        found = _pick(manifest, key, fmt, requirement)
        if found is None:
            missing.append(text + (f" (needed by {wanted_by})" if wanted_by else ""))
            return
        name, entry = found
        path = output / platform / name
        if not path.is_file() or sha256_file(path) != entry.sha256:
            tampered.append(name)
            return
        artifact = Artifact(name, path, entry.sha256, fmt, entry.package, entry.version, entry.cell, entry.finished_at)
        for dep in _requires(path, fmt):
            visit(dep, f"{entry.package} {entry.version}", trail + (key,))
        chosen[key] = artifact
        order.append(key)

    for text in requirements:
        visit(text, None, ())
    if tampered:
        raise DeployError(
            f"published artifacts of {platform} no longer match their manifest: {', '.join(sorted(set(tampered)))}",
            hint=f"run `python -m builder verify`, then rebuild them with `python -m builder all --platform {platform} --force`",
        )
    if missing:
        raise DeployError(
            f"no published {fmt} of {platform} for: {'; '.join(missing)}",
            hint=_build_hint(matrix, platform, missing),
        )
    return [chosen[key] for key in order]


def _pick(manifest: Manifest, key: str, fmt: Format, requirement: Requirement) -> tuple[str, ArtifactEntry] | None:
    candidates = []
    for name, entry in manifest.artifacts.items():
        if entry.format != fmt or canonicalize_name(entry.package) != key:
            continue
        if requirement.specifier.contains(entry.version, prereleases=True):
            candidates.append((_version(entry.version), name, entry))
    if not candidates:
        return None
    _, name, entry = max(candidates, key=lambda c: (c[0], c[1]))
    return name, entry


def _version(text: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        return Version("0")


def _build_hint(matrix: Matrix, platform: str, missing: list[str]) -> str:
    known = {canonicalize_name(p.name): p.name for p in matrix.packages}
    names = []
    unknown = []
    for line in missing:
        project = re.split(r"[\s<>=!~;\[(]", line, maxsplit=1)[0]
        if canonicalize_name(project) in known:
            names.append(known[canonicalize_name(project)])
        else:
            unknown.append(project)
    parts = []
    if names:
        parts.append(f"build them: python -m builder all --platform {platform} --package {','.join(sorted(set(names)))}")
    if unknown:
        parts.append(f"add {', '.join(sorted(set(unknown)))} to matrix.yaml's packages (pinned by sha256), then build")
    return "; ".join(parts)


def _requires(path: Path, fmt: Format) -> list[str]:
    """The artifact's own run-time requirements, read from inside it."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if fmt == "egg":
            if "EGG-INFO/requires.txt" not in names:
                return []
            return _requires_txt(archive.read("EGG-INFO/requires.txt").decode("utf-8", "replace"))
        metadata = [n for n in names if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
        if not metadata:
            return []
        text = archive.read(metadata[0]).decode("utf-8", "replace")
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:")
            and "extra ==" not in line.replace("extra==", "extra ==")]


def _requires_txt(text: str) -> list[str]:
    """requires.txt: plain lines, then [extra] sections (skipped) and [:marker] sections."""
    found: list[str] = []
    marker: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            extra, _, marker_text = section.partition(":")
            marker = None if extra else marker_text or None
            if extra:
                marker = "skip"
            continue
        if marker == "skip":
            continue
        found.append(f"{line}; {marker}" if marker else line)
    return found


def _marker_environment(manifest: Manifest, freebsd: bool) -> dict[str, str]:
    """Markers are evaluated for the platform's Python, which its artifacts' names tell."""
    major, minor = 3, 11
    for name in manifest.artifacts:
        match = re.search(r"-py(\d)\.(\d+)", name) or re.search(r"-cp(\d)(\d+)-", name)
        if match:
            major, minor = int(match.group(1)), int(match.group(2))
            break
    return {"python_version": f"{major}.{minor}", "python_full_version": f"{major}.{minor}.0",
            "sys_platform": "freebsd" if freebsd else "linux", "platform_system": "FreeBSD" if freebsd else "Linux",
            "os_name": "posix",
            "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}


def _applies(marker: Marker, environment: dict[str, str]) -> bool:
    try:
        return marker.evaluate(environment)
    except (InvalidMarker, ValueError):
        return True


__all__ = ["Artifact", "resolve"]

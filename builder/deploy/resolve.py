"""Requirements to published artifacts, before any host is touched.

check-imports' resolver (builder.output.published) does the choosing: every published artifact of the
platform is hashed against its manifest, then each requirement and, through each artifact's own
metadata, what it requires, resolves to the newest published artifact of the target's format
for the platform's Python; what is missing is refused (NotPublished) with the `builder all`
selection that publishes it. Here the choice is put in install order, dependencies first, with
the provenance the release manifest records.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ..matrix.model import Format, Matrix
from ..output import published
from ..output.publish import read_manifest


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
    """The artifacts to install, dependencies before what needs them; NotPublished if any is missing."""
    available = published.load(matrix, platform)
    wanted = [("the deploy target", Requirement(text)) for text in requirements]
    chosen = published.resolve(matrix, platform, available, wanted, fmt, platform_python(available))
    manifest = read_manifest(matrix.settings.output, platform)
    assert manifest is not None  # load() refused an empty platform
    return [Artifact(a.filename, a.path, a.sha256, a.format, a.package, a.version,
                     manifest.artifacts[a.filename].cell, manifest.artifacts[a.filename].finished_at)
            for a in install_order(chosen)]


def platform_python(artifacts: Sequence[published.Artifact]) -> str:
    """The platform's Python as its compiled artifacts' names tell it (-py2.7- eggs, cp27 wheels);
    requirement markers are judged for it."""
    for artifact in artifacts:
        found = re.search(r"-py(\d)\.(\d+)-linux", artifact.filename) or re.search(r"-cp(\d)(\d+)-", artifact.filename)
        if found:
            return f"{found.group(1)}.{found.group(2)}.0"
    for artifact in artifacts:
        found = re.search(r"-py(\d)\.(\d+)\.egg$", artifact.filename)
        if found:
            return f"{found.group(1)}.{found.group(2)}.0"
    return "3.11.0"


def install_order(chosen: Sequence[published.Artifact]) -> list[published.Artifact]:
    """Each artifact after those it requires (depth first, in the order chosen)."""
    by_project = {a.project: a for a in chosen}
    ordered: list[published.Artifact] = []
    visiting: set[str] = set()

    def visit(artifact: published.Artifact) -> None:
        if artifact in ordered or artifact.project in visiting:
            return
        visiting.add(artifact.project)
        for text in artifact.requires:
            # No try: published.resolve parsed every requirement of every chosen artifact and
            # refused (NotPublished) one that does not parse, so each text here parses. Skipping
            # one would put an artifact before what it needs, silently.
            dep = by_project.get(canonicalize_name(Requirement(text).name))
            if dep is not None:
                visit(dep)
        ordered.append(artifact)

    for artifact in chosen:
        visit(artifact)
    return ordered


__all__ = ["Artifact", "resolve"]

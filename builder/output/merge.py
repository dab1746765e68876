"""`merge`: publish what separate CI jobs published, as one local `all` would have.

Each part is a job's folder holding its output (`eggs/<platform>/…` with its manifest). Every
artifact is re-hashed against the part's manifest, and each cell must be one the matrix
declares with the same version and source sha256: a part built from other inputs is refused.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import BuilderError
from ..fetch import sha256_file
from ..matrix.model import Matrix
from ..matrix.plan import Cell, all_cells
from . import fingerprint as _fingerprint
from . import provenance, signing
from . import publish as publisher


def _manifests(part: Path) -> list[Path]:
    if not part.is_dir():
        raise BuilderError(f"{part} is not a folder", hint="pass the folders the CI jobs uploaded")
    return sorted(p for p in part.rglob("manifest.json") if ".builder" not in p.parts and (p.parent / "index.html").exists())


def _check_signature(path: Path, keys: signing.Keys | None) -> None:
    """A part's manifest that carries a signature must carry one of this key: a part signed by
    another builder, or changed after it was signed, is refused. An unsigned part is taken (a CI
    job need not hold the key); what merge publishes is signed here either way."""
    signature = path.parent / publisher.SIGNATURE
    if keys is None or not signature.is_file():
        return
    if not keys.valid(path.read_bytes(), signature.read_bytes()):
        raise BuilderError(f"{signature} does not verify {path} with {keys.path} (key sha256 {keys.fingerprint[:16]})",
                           hint="the part was changed after it was signed, or signed with another key: re-run that job")


def _statement(folder: Path, package: str, version: str, files: Sequence[Path], manifest: publisher.Manifest,
               keys: signing.Keys | None) -> dict[str, Any] | None:
    """The part's provenance statement of a cell, checked: about the part's artifacts with their
    sha256, and (with a key, when signed) signed by it. None when the part has none."""
    path = folder / provenance.filename(package, version)
    if not path.is_file():
        return None
    document = provenance.load(path.read_bytes(), str(path))
    wanted = {file.name: manifest.artifacts[file.name].sha256 for file in files}
    if provenance.subjects(document) != wanted:
        raise BuilderError(f"{path} is not about the part's artifacts {', '.join(sorted(wanted))} with their sha256",
                           hint="re-run that cell's job")
    signature = path.with_name(path.name + signing.SUFFIX)
    if keys is not None and signature.is_file() and not keys.valid(path.read_bytes(), signature.read_bytes()):
        raise BuilderError(f"{signature} does not verify {path} with {keys.path}", hint="re-run that cell's job")
    return {**document, "subject": []}


def records(matrix: Matrix, parts: Sequence[Path],
            keys: signing.Keys | None = None) -> dict[str, list[publisher.PublishRecord]]:
    cells: dict[str, Cell] = {c.id: c for c in all_cells(matrix)}
    chosen: dict[str, publisher.PublishRecord] = {}
    for part in sorted(parts):
        for path in _manifests(part):
            folder = path.parent
            _check_signature(path, keys)
            manifest = publisher.read_manifest(folder.parent, folder.name)
            if manifest is None:
                continue
            for cell_id, entry in sorted(manifest.cells.items()):
                cell = cells.get(cell_id)
                if cell is None:
                    raise BuilderError(
                        f"{path}: cell {cell_id} is not in {matrix.label}", hint="merge only parts built from this matrix"
                    )
                files = [folder / name for name in entry.artifacts]
                first = manifest.artifacts[entry.artifacts[0]] if entry.artifacts else None
                if first is None or entry.version != cell.spec.source.version or first.source_sha256 != cell.spec.source.sha256:
                    raise BuilderError(
                        f"{path}: {cell_id} was built from {entry.version} ({first.source_sha256 if first else '?'}), "
                        f"but the matrix pins {cell.spec.source.version} ({cell.spec.source.sha256})",
                        hint="rebuild that cell from this matrix",
                    )
                for file in files:
                    if not file.is_file() or sha256_file(file) != manifest.artifacts[file.name].sha256:
                        raise BuilderError(f"{file} is missing or does not match its manifest", hint="re-run that cell's job")
                if cell_id in chosen:
                    continue  # a dependency built again in another job: the first part wins
                statement = _statement(folder, cell.package.name, entry.version, files, manifest, keys)
                chosen[cell_id] = publisher.PublishRecord(
                    cell_id=cell_id, package=cell.package.name, version=entry.version, platform=folder.name,
                    artifacts=tuple(files), source_sha256=first.source_sha256, input_key=entry.input_key,
                    build_image=first.build_image, runtime_image=first.runtime_image,
                    builder_version=first.builder_version, finished_at=entry.finished_at,
                    runtime_packages=cell.system.runtime, family=cell.platform.family, provenance=statement,
                )
    by_platform: dict[str, list[publisher.PublishRecord]] = {}
    for record in chosen.values():
        by_platform.setdefault(record.platform, []).append(record)
    return by_platform


def fingerprints(parts: Sequence[Path]) -> dict[str, bytes]:
    """Each platform's runtime image fingerprint as the parts carry it (the first part's wins,
    as for cells); each one is checked before anything is written."""
    found: dict[str, bytes] = {}
    for part in sorted(parts):
        for path in _manifests(part):
            fp = path.parent / _fingerprint.FILENAME
            if path.parent.name not in found and fp.is_file():
                raw = fp.read_bytes()
                _fingerprint.load(raw, str(fp))
                found[path.parent.name] = raw
    return found


def merge(matrix: Matrix, parts: Sequence[Path], echo: Callable[[str], None]) -> int:
    """Publish every cell found in the parts; returns how many were published."""
    keys = signing.keys(matrix.settings, sign=True)
    found = records(matrix, parts, keys)  # everything is checked before anything is written
    prints = fingerprints(parts)
    output = matrix.settings.output
    output.mkdir(parents=True, exist_ok=True)
    with publisher.output_lock(output):
        for line in publisher.recover(output):
            echo(line)
        for platform, items in sorted(found.items()):
            publisher.publish(output, platform, items, fingerprint=prints.get(platform), keys=keys)
            for record in items:
                echo(f"[{record.cell_id}] merged: {', '.join(a.name for a in record.artifacts)}")
    return sum(len(items) for items in found.values())

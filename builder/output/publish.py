"""Publish passing artifacts into output/<platform>/ for offline installs, and check them later.

output/<platform>/ holds the artifacts (flat), index.html (links with sha256 for pip
--find-links and easy_install -f), simple/ (a PEP 503 index of the wheels) and manifest.json.
Writes are crash-safe (see journal.py) and serialized by output_lock(); output/README.md and any
other file of the users' is never touched.
"""
from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import BuilderError, ConfigError, LockError
from ..fetch import sha256_file
from . import fingerprint as _fingerprint
from . import journal as _journal
from . import lock as _lock
from . import ospackages as _os
from . import provenance as _provenance
from . import sbom as _sbom
from . import signing as _signing
from . import system as _system
from .index import (
    ArtifactEntry,
    CellEntry,
    Manifest,
    artifact_format,
    dump_manifest,
    is_plain_name,
    load_manifest,
    render_pages,
)

__all__ = [
    "ArtifactEntry", "CellEntry", "Manifest", "Problem", "PublishRecord",
    "output_lock", "publish", "read_manifest", "recover", "verify",
]

LOCK = ".lock"
SIGNATURE = "manifest.json" + _signing.SUFFIX  # the manifest's detached signature, beside it
_ARTIFACT_SUFFIXES = (".egg", ".whl", ".tar.gz")

ProblemKind = Literal["tampered", "missing", "unlisted", "bad-manifest", "unsigned", "bad-signature"]


@dataclass(frozen=True)
class PublishRecord:
    """One passing cell and what it produced."""

    cell_id: str
    package: str
    version: str
    platform: str
    artifacts: tuple[Path, ...]
    source_sha256: str
    input_key: str
    build_image: str
    runtime_image: str
    builder_version: str
    finished_at: str
    # The OS packages the cell's artifacts need on the servers (its matrix system.<family>.runtime,
    # as its runtime image was given them) and the platform's family; None: not known.
    runtime_packages: tuple[str, ...] | None = None
    family: str = ""
    # The cell's provenance statement without its subject (provenance.statement); None: none.
    provenance: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Problem:
    path: Path
    kind: ProblemKind
    detail: str


def read_manifest(output: Path, platform: str) -> Manifest | None:
    """The platform's manifest, None if it has none yet; BuilderError if it cannot be read."""
    path = output / platform / "manifest.json"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BuilderError(f"cannot read {path}: {exc.strerror}") from exc
    return load_manifest(raw, str(path))


def _merge(old: Manifest | None, platform: str, records: Sequence[PublishRecord],
           hashes: dict[str, tuple[str, int]]) -> Manifest:
    artifacts = dict(old.artifacts) if old else {}
    cells = dict(old.cells) if old else {}
    for record in records:
        names = tuple(sorted(path.name for path in record.artifacts))
        for name in names:
            sha256, size = hashes[name]
            artifacts[name] = ArtifactEntry(
                sha256, size, artifact_format(name), record.package, record.version, record.cell_id,
                record.source_sha256, record.input_key, record.build_image, record.runtime_image,
                record.builder_version, record.finished_at,
            )
        cells[record.cell_id] = CellEntry(record.package, record.version, record.input_key, names, record.finished_at)
    # A file now made by another cell is no longer the old cell's: its entry must not claim it.
    for cell_id, entry in cells.items():
        owned = tuple(name for name in entry.artifacts if artifacts[name].cell == cell_id)
        if owned != entry.artifacts:
            cells[cell_id] = CellEntry(entry.package, entry.version, entry.input_key, owned, entry.finished_at)
    return Manifest(platform, dict(sorted(artifacts.items())), dict(sorted(cells.items())))


def _check(platform: str, records: Sequence[PublishRecord]) -> None:
    if not is_plain_name(platform):
        raise BuilderError(f"platform name {platform!r} cannot be a folder of the output")
    seen: dict[str, str] = {}
    cells: set[str] = set()
    for record in records:
        if record.platform != platform:
            raise BuilderError(f"{record.cell_id} is for platform {record.platform}, not {platform}")
        if record.cell_id in cells:
            raise BuilderError(f"{record.cell_id} is given twice to publish")
        cells.add(record.cell_id)
        for path in record.artifacts:
            artifact_format(path.name)
            if not is_plain_name(path.name):
                raise BuilderError(f"{path.name!r} cannot be published: the name must not start with a dot")
            if not path.is_file():
                hint = "build and test the cell again"
                raise BuilderError(f"{record.cell_id}: artifact {path} is missing", hint=hint)
            if path.name in seen:
                raise BuilderError(f"{path.name} is produced by both {seen[path.name]} and {record.cell_id}")
            seen[path.name] = record.cell_id


def publish(output: Path, platform: str, records: Sequence[PublishRecord], *, fingerprint: bytes | None = None,
            keys: _signing.Keys | None = None) -> list[Path]:
    """Add the records' artifacts to output/<platform>/ and rewrite its manifest and indexes;
    with keys, manifest.json.sig too, in the same journaled commit.

    Previously published artifacts stay (the folder keeps history) unless a new one has the same
    file name. `fingerprint`, the platform's runtime image's (fingerprint.json), is written with
    them when given. Returns the published artifacts' paths in the output folder.
    """
    _check(platform, records)
    if keys is None and (output / platform / SIGNATURE).exists():
        # Unsigned, the new manifest would sit beside the signature of the old one.
        raise ConfigError(f"{output / platform / 'manifest.json'} is signed ({SIGNATURE} beside it): "
                          "publishing there without the key would leave it with a signature that does not match",
                          hint="set settings.signing_key (or BUILDER_SIGNING_KEY) to the key that signs it")
    with output_lock(output):
        recover(output)
        _journal.crash_point("start")
        if not records:
            return []
        folder = output / platform
        folder.mkdir(parents=True, exist_ok=True)
        old = read_manifest(output, platform)
        renames: list[_journal.Rename] = []
        hashes: dict[str, tuple[str, int]] = {}
        for record in records:
            for path in record.artifacts:
                rename, size = _journal.stage_copy(folder, path.name, path)
                hashes[path.name] = (rename.sha256, size)
                renames.append(rename)
        _journal.crash_point("copied")
        manifest = _merge(old, platform, records, hashes)
        staged = {**render_pages(manifest), "manifest.json": dump_manifest(manifest)}
        staged[_system.FILENAME] = _system_packages(folder, manifest, records)
        if fingerprint is not None:
            staged[_fingerprint.FILENAME] = fingerprint
        statements = _statements(folder, records, hashes, staged)
        staged[_sbom.FILENAME] = _sbom.render(manifest, statements)
        if keys is not None:
            for name in [n for n in staged if n.endswith(_provenance.SUFFIX)] + [_sbom.FILENAME, "manifest.json"]:
                staged[name + _signing.SUFFIX] = keys.sign(staged[name])
        # Artifacts, then pages, then manifest.json last: it is what verify and users trust.
        for final in sorted(staged, key=lambda name: (name == "manifest.json", "/" not in name, name)):
            renames.append(_journal.stage_bytes(folder, final, staged[final]))
        _journal.commit(folder, renames)
        _journal.crash_point("done")
        return sorted(folder / name for name in hashes)


def _statements(folder: Path, records: Sequence[PublishRecord], hashes: Mapping[str, tuple[str, int]],
                staged: dict[str, bytes]) -> dict[str, Mapping[str, Any]]:
    """The provenance statements of the folder once this publish is done: each record's (added to
    `staged`, with the artifacts it hashed as subject) over those already there."""
    found = read_statements(folder)
    for record in records:
        if record.provenance is None:
            continue
        document = _provenance.with_subject(record.provenance, {p.name: hashes[p.name][0] for p in record.artifacts})
        name = _provenance.filename(record.package, record.version)
        staged[name] = _provenance.dump(document)
        found[name] = document
    return found


def read_statements(folder: Path) -> dict[str, Mapping[str, Any]]:
    """The folder's provenance statements that parse, by file name (provenance/NAME.intoto.json);
    verify names those that do not."""
    found: dict[str, Mapping[str, Any]] = {}
    for path in sorted((folder / _provenance.FOLDER).glob("*" + _provenance.SUFFIX)):
        try:
            found[f"{_provenance.FOLDER}/{path.name}"] = _provenance.load(path.read_bytes(), str(path))
        except (OSError, BuilderError):
            continue
    return found


def _system_packages(folder: Path, manifest: Manifest, records: Sequence[PublishRecord]) -> bytes:
    """system-packages.json, written with the manifest: the records' needs and the old file's for
    the artifacts that stay. An unreadable old file leaves those artifacts unknown, as it says."""
    path = folder / _system.FILENAME
    try:
        old: _system.ServerPackages | None = _system.load(path.read_bytes(), str(path))
    except (FileNotFoundError, BuilderError):
        old = None
    new = {
        artifact.name: None if r.runtime_packages is None
        else _system.Needs(r.package, r.version, r.cell_id, tuple(sorted(set(r.runtime_packages))))
        for r in records for artifact in r.artifacts
    }
    return _system.dump(_system.merged(old, manifest, next((r.family for r in records if r.family), ""), new))


def _platform_folders(output: Path) -> list[Path]:
    if not output.is_dir():
        return []
    return sorted(p for p in output.iterdir() if p.is_dir() and not p.name.startswith("."))


def recover(output: Path) -> list[str]:
    """Finish an interrupted publish (journal complete) or undo it (no journal). Says what it did."""
    with output_lock(output):
        return [line for folder in _platform_folders(output) for line in _journal.recover_folder(folder)]


def verify(output: Path, keys: _signing.Keys | None = None) -> list[Problem]:
    """Re-hash every listed artifact of every platform, and with keys check each manifest's
    signature; an empty list means all is well."""
    with _shared_lock(output):
        problems = [problem for folder in _platform_folders(output)
                    for problem in _verify_folder(folder) + _verify_signature(folder, keys)
                    + _verify_statements(folder, keys)]
        for path in sorted(output.iterdir()) if output.is_dir() else []:
            if path.is_file() and path.name.endswith(_ARTIFACT_SUFFIXES):
                problems.append(Problem(path, "unlisted", "not in any platform's manifest.json"))
    return problems


def _verify_folder(folder: Path) -> list[Problem]:
    problems: list[Problem] = []
    listed: set[Path] = set()
    if (folder / _journal.JOURNAL).exists():
        detail = "a publish was interrupted: publish again to finish it"
        problems.append(Problem(folder / _journal.JOURNAL, "bad-manifest", detail))
    try:
        manifest = read_manifest(folder.parent, folder.name)
    except BuilderError as exc:
        return [*problems, Problem(folder / "manifest.json", "bad-manifest", exc.message)]
    if manifest is not None and manifest.platform != folder.name:
        problems.append(Problem(folder / "manifest.json", "bad-manifest", f"says platform {manifest.platform}"))
    for name, entry in (manifest.artifacts if manifest else {}).items():
        path = folder / name
        listed.add(path)
        if not path.is_file():
            problems.append(Problem(path, "missing", f"listed with sha256 {entry.sha256}"))
            continue
        actual = sha256_file(path)
        if actual != entry.sha256 or path.stat().st_size != entry.size:
            problems.append(Problem(path, "tampered", f"sha256 {actual}, manifest says {entry.sha256}"))
    if manifest is not None:
        for page, data in render_pages(manifest).items():
            path = folder / page
            if not path.is_file() or path.read_bytes() != data:
                problems.append(Problem(path, "tampered", "does not match manifest.json"))
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name.endswith(_ARTIFACT_SUFFIXES) and path not in listed:
            problems.append(Problem(path, "unlisted", "not in manifest.json"))
    problems += [Problem(path, kind, detail) for path, kind, detail in _os.verify(folder)]  # type: ignore[arg-type]
    return problems


def _verify_signature(folder: Path, keys: _signing.Keys | None) -> list[Problem]:
    manifest = folder / "manifest.json"
    if keys is None or not manifest.is_file():
        return []
    signature = folder / SIGNATURE
    if not signature.is_file():
        return [Problem(manifest, "unsigned", f"has no {SIGNATURE}: publish it again with the key set")]
    if not keys.valid(manifest.read_bytes(), signature.read_bytes()):
        return [Problem(signature, "bad-signature",
                        f"does not verify manifest.json with {keys.path} (key sha256 {keys.fingerprint[:16]})")]
    return []


def _verify_statements(folder: Path, keys: _signing.Keys | None) -> list[Problem]:
    """Each provenance statement is about artifacts the manifest lists with the same sha256, and
    the SBOM is what the manifest and the statements render to; with keys, each is signed."""
    try:
        manifest = read_manifest(folder.parent, folder.name)
    except BuilderError:
        return []  # _verify_folder says so
    if manifest is None:
        return []
    problems: list[Problem] = []
    statements: dict[str, Mapping[str, Any]] = {}
    for path in sorted((folder / _provenance.FOLDER).glob("*" + _provenance.SUFFIX)):
        name = f"{_provenance.FOLDER}/{path.name}"
        try:
            document = _provenance.load(path.read_bytes(), str(path))
        except (OSError, BuilderError) as exc:
            problems.append(Problem(path, "tampered", getattr(exc, "message", str(exc))))
            continue
        statements[name] = document
        for artifact, sha in _provenance.subjects(document).items():
            entry = manifest.artifacts.get(artifact)
            if entry is not None and entry.sha256 != sha:
                problems.append(Problem(path, "tampered", f"says {artifact} has sha256 {sha}, manifest says {entry.sha256}"))
    sbom = folder / _sbom.FILENAME
    if sbom.is_file():
        if sbom.read_bytes() != _sbom.render(manifest, statements):
            problems.append(Problem(sbom, "tampered", "does not match manifest.json and provenance/"))
    elif statements:
        problems.append(Problem(sbom, "missing", "the folder has provenance/ but no SBOM: publish it again"))
    if keys is None:
        return problems
    for path in [*(folder / name for name in statements), *([sbom] if sbom.is_file() else [])]:
        signature = path.with_name(path.name + _signing.SUFFIX)
        if not signature.is_file():
            problems.append(Problem(path, "unsigned", f"has no {signature.name}: publish it again with the key set"))
        elif not keys.valid(path.read_bytes(), signature.read_bytes()):
            problems.append(Problem(signature, "bad-signature", f"does not verify {path.name} with {keys.path}"))
    return problems


# Locks this process holds, by (output folder, thread): publish() inside output_lock() must not
# wait for itself, while another thread still waits as another process would.
_held: dict[tuple[Path, int], int] = {}


@contextmanager
def output_lock(output: Path, wait: bool = True, timeout: float | None = None) -> Iterator[None]:
    """Hold output/.lock (flock) for one writer; the file says who holds it while it is held."""
    key = (output.resolve(), threading.get_ident())
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    output.mkdir(parents=True, exist_ok=True)
    fd = os.open(output / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, output, wait, timeout)
        _lock.write_holder(fd)
        _held[key] = 1
        try:
            yield
        finally:
            del _held[key]
            _lock.release(fd)
    finally:
        os.close(fd)


def _acquire(fd: int, output: Path, wait: bool, timeout: float | None) -> None:
    if wait and timeout is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    deadline = time.monotonic() + (timeout or 0.0)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if not wait or time.monotonic() >= deadline:
                raise LockError(f"{output}/ is being published by {_lock.holder(fd)}: wait for it, or stop it") from None
            time.sleep(0.05)


@contextmanager
def _shared_lock(output: Path) -> Iterator[None]:
    """Wait out a running publish, read-only: verify must work on a read-only copy too."""
    if (output.resolve(), threading.get_ident()) in _held:
        yield
        return
    try:
        fd = os.open(output / LOCK, os.O_RDONLY)
    except FileNotFoundError:
        # No lock file: builder never published here (publish makes the lock before it writes
        # anything), so there is no publish to wait out.
        yield
        return
    except OSError as exc:
        # A lock we cannot take: verifying unlocked could read a publish half-done and report
        # tampering that is not there, so say it instead.
        raise LockError(
            f"cannot open {output / LOCK} to wait out a running publish: {exc.strerror or exc}",
            hint="run verify as a user who can read the output folder's lock file",
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)

"""The platform's interpreter packages, published to output/<platform>/os/ beside the eggs, with
their own os/manifest.json (hashes and provenance), through the same journal as the artifacts.

The servers install the runtime package (`dpkg -i`, `rpm -i`, `pkg add`) before any egg: it is the
interpreter the runtime image was made from and the artifacts were tested with.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import BuilderError
from ..fetch import sha256_file
from . import journal as _journal

FOLDER = "os"
MANIFEST = "manifest.json"
SUFFIXES = (".deb", ".rpm", ".pkg")


def read(output: Path, platform: str) -> dict[str, dict[str, object]]:
    """The published packages of a platform by file name ({} when none); BuilderError if the
    manifest cannot be read."""
    path = output / platform / FOLDER / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise BuilderError(f"cannot read {path}: {exc}", hint="publish again, or run verify") from exc
    packages = data.get("packages") if isinstance(data, dict) else None
    if not isinstance(packages, dict):
        raise BuilderError(f"{path} has no packages mapping", hint="publish again, or run verify")
    return packages


def interpreter(output: Path, platform: str) -> tuple[str, dict[str, object]] | None:
    """The published runtime interpreter package of the platform: (its file name, its entry with
    package and version), or None when the platform's interpreter is not builder's."""
    for name, entry in sorted(read(output, platform).items()):
        if entry.get("runtime") and isinstance(entry.get("package"), str):
            return name, entry
    return None


def publish(output: Path, platform: str, files: Sequence[Path], about: Mapping[str, object], *,
            names: Mapping[str, str], version: str) -> list[Path]:
    """Put the packages in output/<platform>/os/ (the caller holds the output lock), each listed
    with its package name (`names`, by file name) and `version` as its package manager reports it;
    returns the files copied: none when every one is published already with the same bytes."""
    folder = output / platform
    published = read(output, platform)
    todo = [f for f in files if published.get(f.name, {}).get("sha256") != sha256_file(f)
            or published[f.name].get("package") != names[f.name]]
    if not todo:
        return []
    (folder / FOLDER).mkdir(parents=True, exist_ok=True)
    renames = []
    packages = dict(published)
    provenance = {k: about[k] for k in ("key", "sources", "configure", "prefix", "build_image", "base_image",
                                         "build_seconds") if k in about}
    for path in todo:
        rename, size = _journal.stage_copy(folder, f"{FOLDER}/{path.name}", path)
        renames.append(rename)
        packages[path.name] = {"sha256": rename.sha256, "size": size, "runtime": path == files[0],
                               "package": names[path.name], "version": version, **provenance}
    data = {"platform": platform, "packages": dict(sorted(packages.items()))}
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    renames.append(_journal.stage_bytes(folder, f"{FOLDER}/{MANIFEST}", text.encode()))
    _journal.commit(folder, renames)
    return [folder / FOLDER / p.name for p in todo]


def verify(folder: Path) -> list[tuple[Path, str, str]]:
    """(path, kind, detail) of every package in folder/os/ that is missing, changed or unlisted."""
    problems: list[tuple[Path, str, str]] = []
    where = folder / FOLDER
    if not where.is_dir():
        return problems
    try:
        listed = read(folder.parent, folder.name)
    except BuilderError as exc:
        return [(where / MANIFEST, "bad-manifest", exc.message)]
    for name, entry in listed.items():
        path = where / name
        if not path.is_file():
            problems.append((path, "missing", f"listed with sha256 {entry.get('sha256')}"))
        elif sha256_file(path) != entry.get("sha256") or path.stat().st_size != entry.get("size"):
            problems.append((path, "tampered", f"sha256 {sha256_file(path)}, os/manifest.json says {entry.get('sha256')}"))
    for path in sorted(where.iterdir()):
        if path.is_file() and path.name.endswith(SUFFIXES) and path.name not in listed:
            problems.append((path, "unlisted", "not in os/manifest.json"))
    return problems

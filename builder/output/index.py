"""What a published platform folder says about itself: manifest.json and the index pages.

Everything here is pure: the manifest is parsed into frozen dataclasses and every page is
rendered from a Manifest alone, sorted, so the same inputs always give the same bytes.
"""
from __future__ import annotations

import html
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from ..errors import BuilderError
from ..matrix.model import Format

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ArtifactEntry:
    sha256: str
    size: int
    format: Format
    package: str
    version: str
    cell: str
    source_sha256: str
    input_key: str
    build_image: str
    runtime_image: str
    builder_version: str
    finished_at: str


@dataclass(frozen=True)
class CellEntry:
    package: str
    version: str
    input_key: str
    artifacts: tuple[str, ...]
    finished_at: str


@dataclass(frozen=True)
class Manifest:
    platform: str
    artifacts: Mapping[str, ArtifactEntry]  # file name -> entry
    cells: Mapping[str, CellEntry]  # cell id -> entry
    manifest_version: int = MANIFEST_VERSION


def artifact_format(filename: str) -> Format:
    """An artifact's format from its name; a wheel's name must also parse, or pip ignores it."""
    if filename.endswith(".egg"):
        return "egg"
    if filename.endswith(".whl"):
        try:
            parse_wheel_filename(filename)
        except InvalidWheelFilename as exc:
            raise BuilderError(f"{filename} is not a valid wheel name: {exc}") from exc
        return "wheel"
    raise BuilderError(f"{filename} is neither an egg nor a wheel", hint="only .egg and .whl files are published")


def is_plain_name(name: str) -> bool:
    """A file name that stays inside its folder and is not one of builder's hidden files."""
    return bool(name) and "/" not in name and "\\" not in name and not name.startswith(".") and name != ".."


def dump_manifest(manifest: Manifest) -> bytes:
    data = {
        "manifest_version": manifest.manifest_version,
        "platform": manifest.platform,
        "artifacts": {name: asdict(entry) for name, entry in manifest.artifacts.items()},
        "cells": {
            cell: {**asdict(entry), "artifacts": sorted(entry.artifacts)} for cell, entry in manifest.cells.items()
        },
    }
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def load_manifest(raw: bytes, where: str) -> Manifest:
    """Parse manifest.json; any deviation from the format is a BuilderError naming `where`."""
    try:
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("manifest_version") != MANIFEST_VERSION:
            raise ValueError(f"manifest_version is {data.get('manifest_version')!r}, expected {MANIFEST_VERSION}")
        platform = _typed(data, "platform", str)
        artifacts = {name: _artifact(name, entry) for name, entry in _typed(data, "artifacts", dict).items()}
        cells = {cell: _cell(cell, entry, artifacts) for cell, entry in _typed(data, "cells", dict).items()}
    except (UnicodeDecodeError, ValueError, TypeError) as exc:
        raise BuilderError(f"{where} is not a valid manifest: {exc}", hint="restore it from version control") from exc
    return Manifest(platform, artifacts, cells)


def _typed(data: Mapping[str, Any], key: str, kind: type) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{key!r} must be a {kind.__name__}, found {value!r}")
    return value


def _artifact(name: str, entry: Any) -> ArtifactEntry:
    if not isinstance(entry, dict):
        raise ValueError(f"artifacts[{name!r}] is not an object")
    if not is_plain_name(name):
        raise ValueError(f"artifact name {name!r} is not a plain file name")
    fields = {key: _typed(entry, key, str) for key in ArtifactEntry.__dataclass_fields__ if key != "size"}
    if fields["format"] not in ("egg", "wheel"):
        raise ValueError(f"artifacts[{name!r}].format is {fields['format']!r}")
    try:
        if artifact_format(name) != fields["format"]:
            raise ValueError(f"artifacts[{name!r}].format does not match its name")
    except BuilderError as exc:
        raise ValueError(exc.message) from exc
    return ArtifactEntry(size=_typed(entry, "size", int), **fields)


def _cell(cell: str, entry: Any, artifacts: Mapping[str, ArtifactEntry]) -> CellEntry:
    if not isinstance(entry, dict):
        raise ValueError(f"cells[{cell!r}] is not an object")
    names = _typed(entry, "artifacts", list)
    unknown = [name for name in names if name not in artifacts]
    if unknown:
        raise ValueError(f"cells[{cell!r}] lists {unknown} which are not in 'artifacts'")
    fields = {key: _typed(entry, key, str) for key in ("package", "version", "input_key", "finished_at")}
    return CellEntry(artifacts=tuple(names), **fields)


def _link(href_prefix: str, name: str, sha256: str) -> str:
    href = f"{href_prefix}{urllib.parse.quote(name)}#sha256={sha256}"
    return f'<a href="{html.escape(href)}">{html.escape(name)}</a><br>'


def _page(title: str, lines: list[str], pep503: bool) -> bytes:
    # PEP 629: the repository version meta tag, which pip reads on simple pages.
    meta = '<meta name="pypi:repository-version" content="1.0">\n' if pep503 else ""
    body = "\n".join(lines)
    return (
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
        f"{meta}<title>{html.escape(title)}</title>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    ).encode()


def render_pages(manifest: Manifest) -> dict[str, bytes]:
    """Every index page of a platform folder, by path relative to that folder."""
    flat = [_link("", name, entry.sha256) for name, entry in sorted(manifest.artifacts.items())]
    pages = {"index.html": _page(f"Eggs and wheels for {manifest.platform}", flat, pep503=False)}
    projects: dict[str, list[str]] = {}
    for name, entry in sorted(manifest.artifacts.items()):
        if entry.format == "wheel":
            projects.setdefault(canonicalize_name(parse_wheel_filename(name)[0]), []).append(
                _link("../../", name, entry.sha256)
            )
    for project, links in sorted(projects.items()):
        pages[f"simple/{project}/index.html"] = _page(f"Links for {project}", links, pep503=True)
    root = [f'<a href="{html.escape(name)}/">{html.escape(name)}</a><br>' for name in sorted(projects)]
    pages["simple/index.html"] = _page(f"Simple index for {manifest.platform}", root, pep503=True)
    return pages

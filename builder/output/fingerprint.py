"""What a platform's runtime image is, kept in output/<platform>/fingerprint.json beside the
manifest: its OS family and release, architecture, C library, the interpreter at the platform's
path (version, ABI, sha256 of its binary) and the installed versions of its run-time OS packages
(with the sonames each provides).

The answers are host.py's `fingerprint` (builder/server/host.py) asked in the runtime image when
builder publishes for the platform; deploy and doctor ask each server the same questions and
compare (builder.deploy.doctor), reading this file without the matrix. Pure: reading and
writing bytes; publish.py writes the file through its journal.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import BuilderError, NotPublished

FILENAME = "fingerprint.json"
VERSION = 1
# What every answer of host.py's fingerprint has, checked when the file is read.
KEYS = {"os": ("family", "id", "release", "arch"), "libc": ("name", "version"),
        "python": ("path", "version", "abi", "sha256")}


def document(platform: str, runtime_image: str, answer: dict[str, Any]) -> dict[str, Any]:
    return {"fingerprint_version": VERSION, "platform": platform, "runtime_image": runtime_image, **answer}


def dump(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def check(doc: Any, where: str) -> dict[str, Any]:
    """The document if it has every fact doctor compares; BuilderError naming the key if not."""
    hint = "publish the platform again (python -m builder all --platform PLATFORM --force) to rewrite it"
    if not isinstance(doc, dict) or doc.get("fingerprint_version") != VERSION:
        raise BuilderError(f"{where}: fingerprint_version is not {VERSION}", hint=hint)
    for part, keys in KEYS.items():
        for key in keys:
            if not isinstance(doc.get(part), dict) or not isinstance(doc[part].get(key), str):
                raise BuilderError(f"{where}: {part}.{key} is missing or not a string", hint=hint)
    if not isinstance(doc.get("packages"), dict):
        raise BuilderError(f"{where}: packages is missing or not an object", hint=hint)
    return doc


def load(raw: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise BuilderError(f"{where} is not JSON: {exc}",
                           hint="publish the platform again (python -m builder all --platform PLATFORM --force)") from exc
    return check(doc, where)


def read(output: Path, platform: str) -> dict[str, Any]:
    """The platform's published fingerprint; NotPublished when the folder has none."""
    path = output / platform / FILENAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NotPublished(
            f"{path} does not exist: {platform} was published without its runtime image's fingerprint",
            hint=f"publish it again (python -m builder all --platform {platform} --force), or, in an emergency, "
                 "deploy with --skip-doctor",
        ) from None
    except OSError as exc:
        raise BuilderError(f"cannot read {path}: {exc.strerror}") from exc
    doc = load(raw, str(path))
    if doc.get("platform") != platform:
        raise BuilderError(f"{path} says platform {doc.get('platform')}, not {platform}",
                           hint=f"publish it again: python -m builder all --platform {platform} --force")
    return doc

"""Where each published artifact came from: one in-toto Statement v1 with a SLSA provenance v1
predicate per cell, in output/<platform>/provenance/<package>-<version>.intoto.json (signed like
the manifest when a key is set), and the checks verify runs on them.

The statement names the artifacts (subject, by sha256) and what made them: the source, the
build requirements, the platform's tools, the build and runtime images by id, builder's
version and the cell's input key (resolvedDependencies); the cell's matrix parameters
(externalParameters); the build commands each format ran and the test command
(internalParameters); and the results: the run-time OS packages as installed in the runtime
image the artifacts were tested in, with their versions and sonames, and what the test proved
(byproducts). The SBOM (sbom.py) is rendered from these statements and the manifest.

Pure: building and reading documents; publish.py writes them through its journal.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from packaging.utils import canonicalize_name

from ..errors import BuilderError

FOLDER = "provenance"
SUFFIX = ".intoto.json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
# Our own build type: a builder cell (build in the build image, test in the runtime image).
BUILD_TYPE = "urn:builder:build-type:cell:v1"
BUILDER_ID = "urn:builder:builder"
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class OsPackage:
    """A run-time OS package as the runtime image has it installed."""

    name: str
    version: str | None  # None: not installed there (the check would have failed the cell)
    arch: str | None
    sonames: tuple[str, ...]


def filename(package: str, version: str) -> str:
    return f"{FOLDER}/{canonicalize_name(package)}-{version}{SUFFIX}"


def _pin(role: str, name: str, version: str, sha256: str, uri: str | None) -> dict[str, Any]:
    found: dict[str, Any] = {"name": name, "digest": {"sha256": sha256}, "annotations": {"role": role, "version": version}}
    if uri:
        found["uri"] = uri
    return found


def _image(role: str, image_id: str) -> dict[str, Any]:
    digest = image_id.split(":", 1)[-1]
    found: dict[str, Any] = {"name": f"{role} image", "annotations": {"role": f"{role}-image", "id": image_id}}
    if _DIGEST.match(digest):
        found["digest"] = {"sha256": digest}
    else:  # a machine, not an image with an id (the vagrant backend): named, not hashed
        found["uri"] = f"urn:builder:machine:{image_id}"
    return found


def statement(
    *,
    cell: str,
    platform: str,
    family: str,
    package: str,
    version: str,
    source: Mapping[str, Any],  # name, version, sha256, url (the sdist)
    build_requires: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]],
    parameters: Mapping[str, Any],
    input_key: str,
    build_image: str,
    runtime_image: str,
    builder_version: str,
    finished_at: str,
    build_commands: Mapping[str, Sequence[str]],
    test_command: str,
    os_packages: Sequence[OsPackage] | None,
    results: Mapping[str, Any],
) -> dict[str, Any]:
    """The statement of one cell, without its subject: publish adds the artifacts it hashed."""
    dependencies = [_pin("source", str(source["name"]), str(source["version"]), str(source["sha256"]), source.get("url"))]
    dependencies += [_pin("build-requirement", str(p["name"]), str(p["version"]), str(p["sha256"]), p.get("url"))
                     for p in build_requires]
    dependencies += [_pin("tool", str(p["name"]), str(p["version"]), str(p["sha256"]), p.get("url")) for p in tools]
    dependencies += [_image(role, image) for role, image in (("build", build_image), ("runtime", runtime_image)) if image]
    return {
        "_type": STATEMENT_TYPE,
        "subject": [],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"cell": cell, "platform": platform, "package": package, "version": version,
                                       **parameters},
                "internalParameters": {
                    "family": family,
                    "input_key": input_key,
                    "build_commands": {fmt: list(argv) for fmt, argv in sorted(build_commands.items())},
                    "test_command": test_command,
                },
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID, "version": {"builder": builder_version}},
                "metadata": {"invocationId": input_key, "finishedOn": finished_at},
                "byproducts": [
                    {"name": "runtime-os-packages", "annotations": {
                        "family": family,
                        "known": os_packages is not None,
                        "packages": [{"name": p.name, "version": p.version, "arch": p.arch, "sonames": list(p.sonames)}
                                     for p in os_packages or ()],
                    }},
                    {"name": "test-results", "annotations": dict(results)},
                ],
            },
        },
    }


def with_subject(document: Mapping[str, Any], hashes: Mapping[str, str]) -> dict[str, Any]:
    return {**document, "subject": [{"name": name, "digest": {"sha256": sha}} for name, sha in sorted(hashes.items())]}


def dump(document: Mapping[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def load(raw: bytes, where: str) -> dict[str, Any]:
    """A statement as builder writes it; BuilderError naming `where` for anything else."""
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BuilderError(f"{where} is not JSON: {exc}", hint="publish the cell again") from None
    problems = structural_problems(document)
    if problems:
        raise BuilderError(f"{where} is not an in-toto statement of SLSA provenance: {problems[0]}",
                           hint="publish the cell again")
    return document


def structural_problems(document: Any) -> list[str]:
    """What an in-toto Statement v1 with a SLSA provenance v1 predicate must have, checked field
    by field (the specifications' required fields and their types)."""
    problems: list[str] = []
    if not isinstance(document, dict):
        return ["not a JSON object"]
    if document.get("_type") != STATEMENT_TYPE:
        problems.append(f"_type is not {STATEMENT_TYPE}")
    subject = document.get("subject")
    if not isinstance(subject, list) or not subject:
        problems.append("subject is not a non-empty list")
    else:
        for entry in subject:
            digest = entry.get("digest") if isinstance(entry, dict) else None
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not isinstance(digest, dict) \
                    or not digest or not all(isinstance(v, str) for v in digest.values()):
                problems.append(f"subject entry {entry!r} has no name and digest")
    if document.get("predicateType") != PREDICATE_TYPE:
        problems.append(f"predicateType is not {PREDICATE_TYPE}")
    predicate = document.get("predicate")
    if not isinstance(predicate, dict):
        return [*problems, "predicate is not an object"]
    definition, details = predicate.get("buildDefinition"), predicate.get("runDetails")
    if not isinstance(definition, dict):
        problems.append("predicate.buildDefinition is not an object")
    else:
        if not isinstance(definition.get("buildType"), str) or ":" not in definition["buildType"]:
            problems.append("buildDefinition.buildType is not a URI")
        if not isinstance(definition.get("externalParameters"), dict):
            problems.append("buildDefinition.externalParameters is not an object")
        for dep in definition.get("resolvedDependencies") or []:
            if not isinstance(dep, dict) or not (dep.get("uri") or dep.get("digest") or dep.get("content")):
                problems.append(f"resolvedDependencies entry {dep!r} has none of uri, digest, content")
    if not isinstance(details, dict) or not isinstance(details.get("builder"), dict) \
            or not isinstance(details["builder"].get("id"), str):
        problems.append("predicate.runDetails.builder.id is missing")
    return problems


def subjects(document: Mapping[str, Any]) -> dict[str, str]:
    """file name -> sha256 of what the statement is about."""
    return {str(s["name"]): str(s["digest"].get("sha256")) for s in document.get("subject") or []}


def os_packages_of(document: Mapping[str, Any]) -> tuple[OsPackage, ...] | None:
    for product in document["predicate"]["runDetails"].get("byproducts") or []:
        if product.get("name") == "runtime-os-packages":
            notes = product.get("annotations") or {}
            if not notes.get("known"):
                return None
            return tuple(OsPackage(str(p["name"]), p.get("version"), p.get("arch"), tuple(p.get("sonames") or ()))
                         for p in notes.get("packages") or [])
    return None


def os_packages_from_checks(checks: Mapping[str, Any]) -> tuple[OsPackage, ...] | None:
    """What the test guest recorded (check.py's os_packages, the same in each format's report)."""
    for report in checks.values():
        found = report.get("os_packages") if isinstance(report, dict) else None
        if isinstance(found, list):
            return tuple(OsPackage(str(p["name"]), p.get("version"), p.get("arch"), tuple(p.get("sonames") or ()))
                         for p in found)
    return None

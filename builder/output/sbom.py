"""The SBOM of a platform's output folder: output/<platform>/sbom.cdx.json, CycloneDX 1.6 JSON
made with cyclonedx-python-lib, rendered from manifest.json and the cells' provenance
statements (provenance.py), so it says what they say and verify can render it again to compare.

Per published artifact: a component with its sha256, its source (the sdist: name, version,
sha256, URL) as its pedigree's ancestor, its build requirements, and a dependency on each
run-time OS package of its cell, with the exact version installed in the runtime image it was
tested in and the sonames that package provides. An artifact published without provenance is
listed with its hash and `builder:provenance: unknown`.
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cyclonedx.model import ExternalReference, ExternalReferenceType, HashAlgorithm, HashType, Property, XsUri
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentScope, ComponentType, Pedigree
from cyclonedx.model.dependency import Dependency
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from .index import Manifest
from .provenance import os_packages_of

FILENAME = "sbom.cdx.json"
# A fixed namespace: the serial number is a function of the manifest, so the same folder always
# renders the same document.
_NAMESPACE = uuid.UUID("6f1c7a52-2b1e-5d0e-9a51-3c1f5b0f9e11")
_OS_PURL = {"debian": "deb", "redhat": "rpm", "freebsd": "generic"}


def _sha(value: str) -> list[HashType]:
    return [HashType(alg=HashAlgorithm.SHA_256, content=value)]


def _pinned(dep: Mapping[str, Any], ref: str, scope: ComponentScope | None) -> Component:
    notes = dep.get("annotations") or {}
    refs = [ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(dep["uri"]))] if dep.get("uri") else []
    return Component(
        name=str(dep["name"]), version=str(notes.get("version", "")), bom_ref=ref, scope=scope,
        hashes=_sha(dep["digest"]["sha256"]), external_references=refs,
        purl=PackageURL("pypi", name=str(dep["name"]).lower(), version=str(notes.get("version", ""))),
        properties=[Property(name="builder:role", value=str(notes.get("role", "")))],
    )


def render(manifest: Manifest, statements: Mapping[str, Mapping[str, Any]]) -> bytes:
    """The SBOM of the folder; `statements` maps each provenance file name to its statement."""
    by_artifact: dict[str, Mapping[str, Any]] = {}
    for _, statement in sorted(statements.items()):
        for subject in statement.get("subject") or []:
            entry = manifest.artifacts.get(subject["name"])
            if entry is not None and subject["digest"].get("sha256") == entry.sha256:
                by_artifact[subject["name"]] = statement
    components: dict[str, Component] = {}
    depends: dict[str, set[str]] = {}
    for name, entry in sorted(manifest.artifacts.items()):
        document = by_artifact.get(name)
        properties = [Property(name="builder:format", value=entry.format), Property(name="builder:cell", value=entry.cell),
                      Property(name="builder:input-key", value=entry.input_key),
                      Property(name="builder:runtime-image", value=entry.runtime_image)]
        ancestors: list[Component] = []
        needs: set[str] = set()
        if document is None:
            properties.append(Property(name="builder:provenance", value="unknown"))
        else:
            properties.append(Property(name="builder:provenance", value=_statement_name(statements, document)))
            for dep in document["predicate"]["buildDefinition"].get("resolvedDependencies") or []:
                role = (dep.get("annotations") or {}).get("role")
                if role == "source":
                    ancestors.append(_pinned(dep, f"source:{dep['digest']['sha256']}:{name}", None))
                elif role == "build-requirement":
                    ref = f"build:{dep['digest']['sha256']}"
                    components.setdefault(ref, _pinned(dep, ref, ComponentScope.EXCLUDED))
                    properties.append(Property(name="builder:build-requirement", value=ref))
            family = str(document["predicate"]["buildDefinition"].get("internalParameters", {}).get("family", ""))
            for package in os_packages_of(document) or ():
                ref = f"os:{package.name}@{package.version or 'not-installed'}"
                if ref not in components:
                    purl = PackageURL(_OS_PURL.get(family, "generic"), namespace=family or None, name=package.name,
                                      version=package.version, qualifiers={"arch": package.arch} if package.arch else None)
                    components[ref] = Component(
                        name=package.name, version=package.version or "", type=ComponentType.LIBRARY, bom_ref=ref,
                        purl=purl, properties=[Property(name="builder:role", value="runtime-os-package"),
                                               *[Property(name="builder:soname", value=s) for s in package.sonames]],
                    )
                needs.add(ref)
        components[name] = Component(
            name=entry.package, version=entry.version, type=ComponentType.LIBRARY, bom_ref=name,
            hashes=_sha(entry.sha256), purl=PackageURL("pypi", name=entry.package.lower(), version=entry.version,
                                                       qualifiers={"file_name": name}),
            properties=properties, pedigree=Pedigree(ancestors=ancestors) if ancestors else None,
        )
        depends[name] = needs
    bom = Bom(
        components=components.values(),
        serial_number=uuid.uuid5(_NAMESPACE, f"{manifest.platform}:" + ",".join(
            f"{n}={e.sha256}" for n, e in sorted(manifest.artifacts.items()))),
        metadata=BomMetaData(properties=[Property(name="builder:platform", value=manifest.platform)]),
    )
    # A fixed time, not now: the document is a function of what is published.
    bom.metadata.timestamp = max((_when(e.finished_at) for e in manifest.artifacts.values()), default=_when(""))
    for name, needs in depends.items():
        bom.dependencies.add(Dependency(ref=components[name].bom_ref,
                                        dependencies=[Dependency(ref=components[r].bom_ref) for r in sorted(needs)]))
    for ref in components:
        if ref not in depends:
            bom.dependencies.add(Dependency(ref=components[ref].bom_ref))
    text = JsonV1Dot6(bom).output_as_string(indent=2)
    return (text + "\n").encode("utf-8")


def _statement_name(statements: Mapping[str, Mapping[str, Any]], document: Mapping[str, Any]) -> str:
    return next(name for name, doc in statements.items() if doc is document)


def _when(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return datetime(1970, 1, 1, tzinfo=UTC)

"""The SBOM and the provenance statements publish writes beside the manifest: valid against
their schemas, rendered from what is published (history included), carried by merge, and
checked by verify. (On real runtime images, with the OS packages dpkg says: tests/e2e/test_trust.py.)"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from builder.output import provenance, sbom
from builder.output.publish import publish, verify

from .test_publish import make_egg, record

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "builder" / "guest"))
import check as guest_check  # noqa: E402


def statement(package: str, version: str, os_packages: list[provenance.OsPackage] | None) -> dict[str, Any]:
    return provenance.statement(
        cell=f"p/{package}", platform="p", family="debian", package=package, version=version,
        source={"name": package, "version": version, "sha256": "5" * 64, "url": f"https://index.example/{package}/"},
        build_requires=[{"name": "Cython", "version": "0.29.37", "sha256": "c" * 64, "url": None}], tools=[],
        parameters={"formats": ["egg"]}, input_key=f"key-p/{package}-{version}", build_image="sha256:" + "b" * 64,
        runtime_image="sha256:" + "e" * 64, builder_version="0.1.0", finished_at="2026-01-02T03:04:05Z",
        build_commands={"egg": ["python3", "setup.py", "bdist_egg"]}, test_command="python3 check.py spec.json",
        os_packages=os_packages, results={"status": "passed"},
    )


def publish_with(out: Path, tmp: Path, package: str, version: str, os_packages: list[provenance.OsPackage] | None,
                 with_provenance: bool = True) -> Path:
    egg = make_egg(tmp, package, version)
    base = record(f"p/{package}", package, version, [egg])
    from dataclasses import replace

    publish(out, "p", [replace(base, provenance=statement(package, version, os_packages) if with_provenance else None)])
    return egg


def test_the_guest_names_the_sonames_among_a_packages_files() -> None:
    files = ["/usr/lib/x86_64-linux-gnu/libyaml-0.so.2", "/usr/lib/x86_64-linux-gnu/libyaml-0.so.2.0.9",
             "/usr/share/doc/libyaml-0-2/copyright", "/usr/lib/x86_64-linux-gnu/libpq.so.5.15", "/usr/lib/libpq.so.5"]
    assert guest_check.sonames_of(files) == ["libpq.so.5", "libyaml-0.so.2"]
    assert guest_check.os_packages("nothing-here", ["libyaml-0-2"]) == [
        {"name": "libyaml-0-2", "version": None, "arch": None, "sonames": []}]


def test_publish_writes_a_valid_sbom_and_statements_that_keep_history(tmp_path: Path) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    out = tmp_path / "eggs"
    yaml_pkg = provenance.OsPackage("libyaml-0-2", "0.2.5-1", "amd64", ("libyaml-0.so.2",))
    publish_with(out, tmp_path, "PyYAML", "5.4.1", [yaml_pkg])
    publish_with(out, tmp_path, "six", "1.16.0", [])
    publish_with(out, tmp_path, "old", "1.0", None, with_provenance=False)
    text = (out / "p" / sbom.FILENAME).read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    document = json.loads(text)
    components = {c["bom-ref"]: c for c in document["components"]}
    egg = "PyYAML-5.4.1-py2.7-linux-x86_64.egg"
    assert components[egg]["pedigree"]["ancestors"][0]["externalReferences"][0]["url"] == "https://index.example/PyYAML/"
    assert next(d for d in document["dependencies"] if d["ref"] == egg)["dependsOn"] == ["os:libyaml-0-2@0.2.5-1"]
    assert {"name": "builder:soname", "value": "libyaml-0.so.2"} in components["os:libyaml-0-2@0.2.5-1"]["properties"]
    assert {"name": "builder:provenance", "value": "unknown"} in components["old-1.0-py2.7-linux-x86_64.egg"]["properties"]
    for path in (out / "p" / "provenance").iterdir():
        assert provenance.structural_problems(json.loads(path.read_text())) == [], path
    assert sorted(p.name for p in (out / "p" / "provenance").iterdir()) == [
        "pyyaml-5.4.1.intoto.json", "six-1.16.0.intoto.json"]
    assert verify(out) == []


def test_verify_names_a_changed_statement_or_sbom(tmp_path: Path) -> None:
    out = tmp_path / "eggs"
    publish_with(out, tmp_path, "six", "1.16.0", [])
    path = out / "p" / "provenance" / "six-1.16.0.intoto.json"
    document = json.loads(path.read_text())
    document["subject"][0]["digest"]["sha256"] = "0" * 64
    path.write_text(json.dumps(document))
    problems = verify(out)
    assert [(p.kind, p.path.name) for p in problems] == [("tampered", path.name), ("tampered", sbom.FILENAME)], problems
    assert "says six-1.16.0-py2.7-linux-x86_64.egg has sha256 0000" in problems[0].detail
    path.write_text("{}")
    assert "is not an in-toto statement" in verify(out)[0].detail


@pytest.mark.parametrize("broken", ["_type", "subject", "predicateType", "buildType", "builder"])
def test_the_structural_check_refuses_a_statement_without_a_required_field(broken: str) -> None:
    document = provenance.with_subject(statement("six", "1", []), {"six-1.egg": "a" * 64})
    if broken == "buildType":
        del document["predicate"]["buildDefinition"]["buildType"]
    elif broken == "builder":
        del document["predicate"]["runDetails"]["builder"]
    else:
        del document[broken]
    assert provenance.structural_problems(document)


def test_the_guest_and_server_scripts_are_ascii_as_python_2_needs_without_a_coding_line() -> None:
    root = Path(__file__).resolve().parents[2] / "builder"
    for path in [*(root / "guest").glob("*.py"), root / "server" / "host.py"]:
        text = path.read_bytes()
        if not any(b"coding" in line for line in text.split(b"\n")[:2]):
            bad = [n for n, line in enumerate(text.splitlines(), 1) if any(b > 127 for b in line)]
            assert not bad, f"{path.name}: non-ASCII on line(s) {bad}"

"""Whatever the file holds, loading it gives a Matrix or a ConfigError, never another exception."""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packaging.utils import canonicalize_name

from builder.errors import ConfigError
from builder.matrix.load import loads
from builder.matrix.model import Matrix

from .test_config import ENV_VARS, FULL

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PATH = Path("/srv/project/matrix.yaml")
KEYS = [
    "settings", "platforms", "packages", "index_url", "output", "cache", "registry_mirror", "name", "backend",
    "family", "python", "base", "debootstrap", "image", "machines", "enabled", "tools", "limits", "memory", "pids",
    "timeout", "version", "sha256", "url", "path", "formats", "build_requires", "setup_args", "env", "extensions",
    "skip_imports", "test", "system", "debian", "redhat", "build", "runtime", "depends", "overrides", "<<",
]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
    st.sampled_from(["egg", "wheel", "docker", "vagrant", "debian", "/usr/bin/python3", "a" * 64, "2g", "1.0"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)


@pytest.fixture(autouse=True, scope="module")
def clean_environment() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for name in ENV_VARS:
            patch.delenv(name, raising=False)
        yield


def check(text: str) -> None:
    try:
        matrix = loads(text, PATH)
    except ConfigError as exc:
        assert exc.location and re.fullmatch(r"matrix\.yaml:\d+", exc.location), exc.location
        return
    assert_consistent(matrix)


def assert_consistent(matrix: Matrix) -> None:
    names = [p.name for p in matrix.platforms]
    assert names and len(set(names)) == len(names)
    packages = {canonicalize_name(p.name): p for p in matrix.packages}
    assert packages and len(packages) == len(matrix.packages)
    for package in matrix.packages:
        builds_on = package.platforms or tuple(names)
        assert set(builds_on) <= set(names) and set(package.overrides) <= set(builds_on)
        assert package.formats and all(re.fullmatch("[0-9a-f]{64}", s.source.sha256) for s in package.overrides.values())
        for dep in package.depends:
            assert canonicalize_name(dep) in packages and dep != package.name
    for path in (matrix.settings.output, matrix.settings.cache, *(p.image_dir for p in matrix.platforms)):
        assert path.is_absolute()
    assert not has_cycle({k: [canonicalize_name(d) for d in p.depends] for k, p in packages.items()})


@FUZZ
@given(st.text(max_size=300))
def test_any_text(text: str) -> None:
    check(text)


@FUZZ
@given(st.dictionaries(st.sampled_from(["settings", "platforms", "packages"]), VALUES, max_size=3) | VALUES)
def test_any_structure(document: Any) -> None:
    check(yaml.safe_dump(document))


def mutate(document: Any, data: st.DataObject) -> Any:
    """Replace, delete or add one thing somewhere in the document."""
    if isinstance(document, dict) and document:
        key = data.draw(st.sampled_from(sorted(document, key=str)))
        action = data.draw(st.sampled_from(["descend", "descend", "delete", "replace", "add"]))
        if action == "descend":
            return {**document, key: mutate(document[key], data)}
        if action == "delete":
            return {k: v for k, v in document.items() if k != key}
        if action == "replace":
            return {**document, key: data.draw(VALUES)}
        return {**document, data.draw(st.sampled_from(KEYS)): data.draw(VALUES)}
    if isinstance(document, list) and document:
        index = data.draw(st.integers(0, len(document) - 1))
        action = data.draw(st.sampled_from(["descend", "descend", "delete", "duplicate"]))
        if action == "descend":
            return [*document[:index], mutate(document[index], data), *document[index + 1:]]
        if action == "delete":
            return document[:index] + document[index + 1:]
        return [*document, document[index]]
    return data.draw(VALUES)


@FUZZ
@given(st.data())
def test_mutated_valid_document(data: st.DataObject) -> None:
    document = yaml.safe_load(FULL)
    for _ in range(data.draw(st.integers(1, 4))):
        document = mutate(document, data)
    check(yaml.safe_dump(document))


@FUZZ
@given(st.data())
def test_mutated_valid_text(data: st.DataObject) -> None:
    lines = FULL.splitlines(keepends=True)
    for _ in range(data.draw(st.integers(1, 3))):
        start = data.draw(st.integers(0, len(lines)))
        end = data.draw(st.integers(start, min(start + 3, len(lines))))
        lines[start:end] = data.draw(st.lists(st.sampled_from(lines) | st.text(max_size=30), max_size=3))
    check("".join(lines))


PLATFORM_NAMES = ["debian11-py27", "debian12", "centos6"]
PACKAGE_NAMES = ["six", "Six", "PyYAML", "python-dateutil", "psycopg2"]


@st.composite
def cross_referencing(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly valid documents whose packages refer to each other and to platforms at random."""
    platforms = [
        {"name": name, "family": "debian", "base": {"debootstrap": "bookworm"}, "python": "/usr/bin/python3"}
        for name in draw(st.lists(st.sampled_from(PLATFORM_NAMES), min_size=1, max_size=3, unique=True))
    ]
    packages = []
    for name in draw(st.lists(st.sampled_from(PACKAGE_NAMES), min_size=1, max_size=4)):
        package: dict[str, Any] = {"name": name, "version": "1.0", "sha256": "ab" * 32}
        if draw(st.booleans()):
            package["depends"] = draw(st.lists(st.sampled_from(PACKAGE_NAMES), max_size=2))
        if draw(st.booleans()):
            package["platforms"] = draw(st.lists(st.sampled_from(PLATFORM_NAMES), min_size=1, max_size=2, unique=True))
        if draw(st.booleans()):
            keys = st.sampled_from(PLATFORM_NAMES)
            change = st.sampled_from([{"version": "0.9"}, {"version": "0.9", "sha256": "cd" * 32}, {"test": "true"}])
            package["overrides"] = draw(st.dictionaries(keys, change, max_size=2))
        packages.append(package)
    return {"platforms": platforms, "packages": packages}


@FUZZ
@given(cross_referencing())
def test_cross_references(document: dict[str, Any]) -> None:
    check(yaml.safe_dump(document))


@st.composite
def dependency_graphs(draw: st.DrawFn) -> dict[str, list[str]]:
    names = [f"p{i}" for i in range(draw(st.integers(1, 6)))]
    return {n: draw(st.lists(st.sampled_from([m for m in names if m != n] or [n]), unique=True)) for n in names}


@FUZZ
@given(dependency_graphs())
def test_cycles_are_refused_and_only_cycles(graph: dict[str, list[str]]) -> None:
    packages = [{"name": n, "version": "1", "sha256": "ab" * 32, "depends": deps} for n, deps in graph.items()]
    platforms = [{"name": "debian12", "family": "debian", "base": {"image": "debian:12"}, "python": "/usr/bin/python3"}]
    text = yaml.safe_dump({"platforms": platforms, "packages": packages})
    cyclic = has_cycle(graph)
    try:
        loads(text, PATH)
    except ConfigError as exc:
        assert cyclic and ("dependency cycle" in str(exc) or "depends on itself" in str(exc)), str(exc)
    else:
        assert not cyclic


def has_cycle(graph: dict[str, list[str]]) -> bool:
    done: set[str] = set()
    while len(done) < len(graph):
        ready = [n for n, deps in graph.items() if n not in done and set(deps) <= done]
        if not ready:
            return True
        done.update(ready)
    return False

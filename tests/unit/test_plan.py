"""Planning is pure: cells, selection, dependency order and input keys, without Docker."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from builder.errors import SelectionError
from builder.matrix.model import Base, BuildSpec, Matrix, Package, Pin, Platform, Settings, SystemPackages
from builder.matrix.plan import all_cells, build_packages, dependencies, dependency_order, input_key, runtime_packages, select


def platform(name: str, enabled: bool = True) -> Platform:
    return Platform(name, "docker", "debian", "/usr/bin/python3", Base("debootstrap", "bookworm"), Path(name), enabled=enabled)


def package(name: str, depends: tuple[str, ...] = (), platforms: tuple[str, ...] | None = None, **system: SystemPackages) -> Package:
    spec = BuildSpec(Pin(name, "1.0", name[0] * 64))
    return Package(name, ("egg", "wheel"), spec, depends=depends, platforms=platforms, system=system)


@pytest.fixture
def matrix() -> Matrix:
    return Matrix(
        Path("matrix.yaml"),
        Settings(),
        (platform("debian11-py27"), platform("debian12"), platform("centos6", enabled=False)),
        (
            package("six"),
            package("python-dateutil", depends=("six",)),
            package("PyYAML", debian=SystemPackages(("libyaml-dev",), ("libyaml-0-2",))),
            package("psycopg2", platforms=("debian12",), debian=SystemPackages(("libpq-dev",), ("libpq5",))),
        ),
    )


def ids(cells: list) -> list[str]:
    return [c.id for c in cells]


def test_cells_and_ids(matrix: Matrix) -> None:
    assert ids(all_cells(matrix))[:5] == [
        "debian11-py27/six", "debian11-py27/python-dateutil", "debian11-py27/pyyaml", "debian12/six", "debian12/python-dateutil",
    ]
    assert "debian11-py27/psycopg2" not in ids(all_cells(matrix))


def test_default_selection_leaves_disabled_platforms_out(matrix: Matrix) -> None:
    assert not [c for c in select(matrix) if c.platform.name == "centos6"]
    assert not [c for c in select(matrix, platforms=["*"]) if c.platform.name == "centos6"]
    assert {c.platform.name for c in select(matrix, platforms=["centos6"])} == {"centos6"}


def test_globs_and_normalised_names(matrix: Matrix) -> None:
    assert ids(select(matrix, platforms=["debian1?"], packages=["pyyaml"])) == ["debian12/pyyaml"]
    assert ids(select(matrix, platforms=["debian12"], packages=["PyYAML", "psy*"])) == ["debian12/pyyaml", "debian12/psycopg2"]


def test_dependencies_are_added_to_the_selection(matrix: Matrix) -> None:
    assert ids(select(matrix, cells=["debian12/python-dateutil"])) == ["debian12/six", "debian12/python-dateutil"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"platforms": ["debian13"]}, "no platform matches 'debian13'"),
        ({"packages": ["numpy"]}, "no package matches 'numpy'"),
        ({"cells": ["debian12/numpy"]}, "no cell 'debian12/numpy'"),
        ({"platforms": ["debian11-py27"], "packages": ["psycopg2"]}, "matches no cell"),
    ],
)
def test_nonsense_selections_say_what_exists(matrix: Matrix, kwargs: dict, message: str) -> None:
    with pytest.raises(SelectionError, match=message):
        select(matrix, **kwargs)


def test_dependency_missing_on_a_platform_is_an_error(matrix: Matrix) -> None:
    broken = replace(matrix, packages=(*matrix.packages[1:], replace(matrix.packages[0], platforms=("debian12",))))
    with pytest.raises(SelectionError, match="needs six at run time"):
        select(broken, cells=["debian11-py27/python-dateutil"])


def test_test_order_puts_dependencies_first(matrix: Matrix) -> None:
    cells = all_cells(matrix)
    reordered = [cells[1], cells[0], *cells[2:]]
    order = ids(dependency_order(reordered))
    assert order.index("debian11-py27/six") < order.index("debian11-py27/python-dateutil")
    dateutil = cells[1]
    assert ids(dependencies(dateutil, cells)) == ["debian11-py27/six"]


def test_system_package_unions(matrix: Matrix) -> None:
    assert runtime_packages(matrix, matrix.platforms[1]) == ("libpq5", "libyaml-0-2")
    assert build_packages(matrix, matrix.platforms[0]) == ("libyaml-dev",)  # psycopg2 is not built there


def test_input_key_changes_with_each_input(matrix: Matrix) -> None:
    cell = all_cells(matrix)[2]
    args = {"build_image": "b", "runtime_image": "r", "guest_digest": "g", "builder_version": "1"}
    key = input_key(cell, **args)
    assert key == input_key(cell, **args)
    for name in args:
        assert input_key(cell, **{**args, name: "other"}) != key
    changed = replace(cell, package=replace(cell.package, spec=replace(cell.spec, setup_args=("--with-libyaml",))))
    assert input_key(changed, **args) != key


def test_messages_name_the_matrix_file_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from builder.errors import ConfigError
    from builder.matrix import deploy
    from builder.matrix.load import load

    (tmp_path / "cases").mkdir()
    sha = "a" * 64
    (tmp_path / "cases" / "x.yaml").write_text(
        "platforms:\n"
        "  - {name: debian11-py27, family: debian, base: {debootstrap: bullseye}, python: /usr/bin/python2.7}\n"
        "  - {name: debian12, family: debian, base: {debootstrap: bookworm}, python: /usr/bin/python3}\n"
        "packages:\n"
        f"  - {{name: six, version: '1.0', sha256: {sha}}}\n"
        f"  - {{name: python-dateutil, version: '1.0', sha256: {sha}, depends: [six]}}\n"
    )
    monkeypatch.chdir(tmp_path)
    given = load("cases/x.yaml")
    assert given.label == "cases/x.yaml"
    with pytest.raises(ConfigError, match="^cases/x.yaml declares no deploy targets"):
        deploy.find(given, "web")
    six = given.package("six")
    broken = replace(given, packages=(replace(six, platforms=("debian12",)), given.package("python-dateutil")))
    with pytest.raises(SelectionError) as err:
        select(broken, cells=["debian11-py27/python-dateutil"])
    assert (err.value.hint or "").endswith("platforms in cases/x.yaml")

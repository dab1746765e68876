"""What "toolless" means per family, as the runtime check proves it (check.py step 1)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.cells.cell import checks_inputs
from builder.guest import check
from builder.matrix import load as config
from builder.matrix.plan import all_cells

REPO = Path(__file__).resolve().parents[2]


def test_any_compiler_fails_a_debian_or_redhat_runtime() -> None:
    for family in ("debian", "redhat"):
        reasons, base = check.toolchain_reasons(family, ["/usr/bin/gcc"], [])
        assert base == [] and len(reasons) == 1 and "/usr/bin/gcc" in reasons[0]
    assert check.toolchain_reasons("debian", [], []) == ([], [])


def test_freebsd_allows_its_base_cc_but_no_other_compiler_or_build_package() -> None:
    reasons, base = check.toolchain_reasons("freebsd", ["/usr/bin/cc", "/usr/bin/c++"], [])
    assert reasons == [] and base == ["/usr/bin/cc", "/usr/bin/c++"]
    reasons, base = check.toolchain_reasons("freebsd", ["/usr/bin/cc", "/usr/local/bin/gcc13"], ["gcc13"])
    assert base == ["/usr/bin/cc"]
    assert "/usr/local/bin/gcc13" in reasons[0] and "/usr/bin/cc" not in reasons[0]
    assert "gcc13" in reasons[1] and "system.freebsd.build" in reasons[1]


def _fake(folder: Path, name: str, script: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def test_installed_packages_asks_each_familys_package_manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Stand-ins for the real tools, with their real calling conventions and answers.
    _fake(tmp_path, "pkg", '[ "$1 $2" = "info -e" ] && [ "$3" = gcc13 ]\n')
    _fake(tmp_path, "rpm", '[ "$1" = -q ] && [ "$2" = libyaml-devel ]\n')
    _fake(tmp_path, "dpkg-query", 'case "$3" in libyaml-dev) printf "install ok installed";; '
          'libpq-dev) printf "deinstall ok config-files";; *) exit 1;; esac\n')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert check.installed_packages("freebsd", ["gcc13", "libyaml"]) == (["gcc13"], None)
    assert check.installed_packages("redhat", ["libyaml-devel", "postgresql-devel"]) == (["libyaml-devel"], None)
    # Removed but with its configuration left is not installed.
    assert check.installed_packages("debian", ["libyaml-dev", "libpq-dev", "zlib1g-dev"]) == (["libyaml-dev"], None)
    assert check.installed_packages("debian", []) == ([], None)


def test_a_missing_package_manager_is_a_reason_not_a_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(check, "PACKAGE_QUERY", {"freebsd": (["no-such-pkg-tool", "info", "-e"], lambda c, o: c == 0)})
    found, problem = check.installed_packages("freebsd", ["gcc13"])
    assert found == [] and problem and "no-such-pkg-tool" in problem and "gcc13" in problem


def test_the_check_spec_carries_the_family_and_the_build_only_packages() -> None:
    matrix = config.load(REPO / "matrix.yaml")
    cells = {c.id: c for c in all_cells(matrix)}
    artifact = Path("/tmp/PyYAML-5.4.1-py2.7.egg")
    sources = {p.sha256: Path(f"/cache/{p.name}") for c in cells.values() for p in c.platform.tools}
    spec, _ = checks_inputs(cells["debian12/pyyaml"], [(artifact, "egg", [])], sources)
    assert spec["family"] == "debian" and spec["build_only"] == ["libyaml-dev"]
    spec, _ = checks_inputs(cells["freebsd/psycopg2"], [(artifact, "egg", [])], sources)
    assert spec["family"] == "freebsd" and spec["build_only"] == []
    spec, _ = checks_inputs(cells["centos6/pyyaml"], [(artifact, "egg", [])], sources)
    assert spec["family"] == "redhat" and spec["build_only"] == ["libyaml-devel"]

"""`add NAME` for real: the index, probe builds in the platforms' build images, look-ups in the
platforms' package indexes, and the normal build, test and publish, on a copy of the matrix."""
from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import yaml

from builder.add import derive, words
from builder.machines import provides
from builder.matrix import load as config

from .conftest import REPO, builder, project
from .sdists import no_strays, start  # noqa: F401 - no_strays is an autouse fixture

PLATFORMS = ("--platform", "debian11-py27", "--platform", "debian12")


def without(name: str) -> str:
    """The shipped matrix without package `name` (its entry is the last one)."""
    text = (REPO / "matrix.yaml").read_text()
    at = text.index(f"  - name: {name}\n")
    return text[:at].rstrip("\n") + "\n"


def entry_of(matrix: Path, name: str) -> dict:
    return next(p for p in yaml.safe_load(matrix.read_text())["packages"] if p["name"] == name)


def test_add_psycopg2_from_nothing_to_published_equals_the_shipped_entry(tmp_path: Path) -> None:
    matrix = project(tmp_path / "p", without("psycopg2"))
    before = matrix.read_text()
    started = time.monotonic()
    done = builder(matrix, "add", "psycopg2", *PLATFORMS)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    text = matrix.read_text()
    assert text.startswith(before.rstrip("\n")), "everything the user wrote stays as it was"
    assert "+  - name: psycopg2" in done.stdout  # the diff is printed
    got = entry_of(matrix, "psycopg2")
    shipped = entry_of(REPO / "matrix.yaml", "psycopg2")
    # What an expert wrote: the Debian lists, the compiled module, and 2.8.6 for Python 2.7.
    assert got["system"]["debian"] == shipped["system"]["debian"] == {"build": ["libpq-dev"], "runtime": ["libpq5"]}
    assert got["extensions"] == shipped["extensions"] == ["psycopg2._psycopg"]
    py27 = dict(got["overrides"]["debian11-py27"])
    # Newer 2.9 releases need a newer setuptools than Debian 12's: pinned for 3.11 only, so 2.7 says none.
    assert py27.pop("build_requires", []) == [] and py27 == shipped["overrides"]["debian11-py27"]
    assert [p["name"] for p in got.get("build_requires", [])] in ([], ["setuptools"])
    assert got["version"].startswith("2.9.") and len(got["sha256"]) == 64  # the newest 2.9 (the shipped one is 2.9.10)
    assert "pg_config" in done.stdout and "libpq-dev" in done.stdout  # the evidence
    assert "bdist_egg works directly" in done.stdout
    for platform in ("debian11-py27", "debian12"):
        published = sorted(p.name for p in (matrix.parent / "eggs" / platform).glob("psycopg2-*"))
        assert any(n.endswith(".egg") for n in published) and any(n.endswith(".whl") for n in published), published
    assert builder(matrix, "verify").returncode == 0
    # The written entry loads strictly, and `all` finds the cells published with its inputs.
    config.load(matrix)
    again = builder(matrix, "all", "--package", "psycopg2", *PLATFORMS)
    assert again.returncode == 0 and again.stdout.count("up to date: published with the same inputs") == 2, again.stdout
    print(f"add psycopg2 on 2 platforms: {took:.1f} s")
    # Already present: said, with --update offered.
    twice = builder(matrix, "add", "psycopg2", *PLATFORMS)
    assert twice.returncode == 14 and "already in" in twice.stderr and "--update" in twice.stderr, twice.stderr
    assert matrix.read_text() == text


def test_add_a_pure_package_writes_extensions_empty(tmp_path: Path) -> None:
    matrix = project(tmp_path / "p", (REPO / "matrix.yaml").read_text())
    done = builder(matrix, "add", "idna", *PLATFORMS, "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "+    extensions: []" in done.stdout, done.stdout
    assert "+        version: '2.10'" in done.stdout  # the newest idna for Python 2.7, in overrides
    assert "+      - {name: flit_core," in done.stdout  # idna 3's build backend, pinned as a wheel
    assert "extensions: none (a pure package)" in done.stdout
    assert "--dry-run" in done.stdout
    assert matrix.read_text() == (REPO / "matrix.yaml").read_text()
    assert not list((matrix.parent / "eggs").glob("*/idna-*"))


def minimal() -> str:
    """The shipped settings and platforms, and six alone."""
    text = (REPO / "matrix.yaml").read_text()
    six = text[text.index("  - name: six\n"):]
    return text[: text.index("packages:\n")] + "packages:\n" + six[: six.index("\n\n") + 1]


def test_add_a_cython_package_whose_sdist_ships_only_pyx(tmp_path: Path) -> None:
    matrix = project(tmp_path / "p", minimal())
    done = builder(matrix, "add", "PyYAML", "--platform", "debian12")
    assert done.returncode == 0, done.stdout + done.stderr
    got = entry_of(matrix, "PyYAML")
    assert [p["name"] for p in got["build_requires"]] == ["Cython"]  # the sdist has _yaml.pyx and no _yaml.c
    assert "without generated C" in done.stdout
    assert got["env"] == {"PYYAML_FORCE_CYTHON": "1", "PYYAML_FORCE_LIBYAML": "1"}  # no silent pure build
    assert got["system"] == {"debian": {"build": ["libyaml-dev"], "runtime": ["libyaml-0-2"]}}  # found from yaml.h
    assert got["extensions"] == ["yaml._yaml"]
    assert list((matrix.parent / "eggs" / "debian12").glob("PyYAML-*.egg"))


def test_add_cffi_adds_pycparser_and_proposes_the_helpers_that_do_not_import(tmp_path: Path) -> None:
    matrix = project(tmp_path / "p", minimal())
    done = builder(matrix, "add", "cffi", *PLATFORMS)
    assert done.returncode == 0, done.stdout + done.stderr
    got = entry_of(matrix, "cffi")
    assert got["system"] == {"debian": {"build": ["libffi-dev"], "runtime": []}}  # found from ffi.h
    # Each release links its own libffi; the runtime images have both already (their Python needs it).
    assert "libffi.so.7" in done.stdout and "libffi.so.8" in done.stdout
    assert got["extensions"] == ["_cffi_backend"]
    assert got["depends"] == ["pycparser"]  # its run-time requirement, added as its own entry
    assert entry_of(matrix, "pycparser")["extensions"] == []
    assert "proposed for skip_imports" in done.stdout
    for platform in ("debian11-py27", "debian12"):
        assert list((matrix.parent / "eggs" / platform).glob("cffi-*.egg"))
        assert list((matrix.parent / "eggs" / platform).glob("pycparser-*.egg"))
    config.load(matrix)


def test_add_python_ldap_writes_each_release_s_libldap_for_its_platform(tmp_path: Path) -> None:
    """Debian 11 ships libldap-2.4-2, Debian 12 libldap-2.5-0: one family, two run-time packages."""
    matrix = project(tmp_path / "p", minimal())
    started = time.monotonic()
    done = builder(matrix, "add", "python-ldap", *PLATFORMS)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    got = entry_of(matrix, "python-ldap")
    assert "system" not in got  # the two platforms' lists differ: neither is the family's
    py27, py311 = got["overrides"]["debian11-py27"], got["overrides"]["debian12"]
    # Python 2.7 takes the last 3.3 release (3.4 needs Python >= 3.6), pinned by its own sha256.
    assert py27["version"].startswith("3.3.") and len(py27["sha256"]) == 64 and py27["sha256"] != got["sha256"]
    assert "version" not in py311 and got["version"].startswith("3.4.")
    # Found from lber.h and sasl/sasl.h; run time from _ldap's DT_NEEDED (liblber/libldap of each
    # release). libsasl2 is not needed by _ldap itself: it comes with libldap.
    assert py27["system"] == {"debian": {"build": ["libldap2-dev", "libsasl2-dev"], "runtime": ["libldap-2.4-2"]}}
    assert py311["system"] == {"debian": {"build": ["libldap-dev", "libsasl2-dev"], "runtime": ["libldap-2.5-0"]}}
    assert "libldap_r-2.4.so.2" in done.stdout and "libldap-2.5.so.0" in done.stdout  # the evidence
    assert got["extensions"] == ["_ldap"]
    assert got["depends"] == ["pyasn1", "pyasn1_modules"]  # its run-time requirements, each its own entry
    # The loader reads each platform's own lists back.
    package = next(p for p in config.load(matrix).packages if p.name == "python-ldap")
    assert package.system_for("debian", "debian11-py27").runtime == ("libldap-2.4-2",)
    assert package.system_for("debian", "debian12").runtime == ("libldap-2.5-0",)
    # Built, tested in each runtime image (with its libldap installed from the list) and published.
    for platform in ("debian11-py27", "debian12"):
        published = sorted(p.name for p in (matrix.parent / "eggs" / platform).glob("python_ldap-*"))
        assert any(n.endswith(".egg") for n in published) and any(n.endswith(".whl") for n in published), published
        for dep in ("pyasn1-", "pyasn1_modules-"):
            assert list((matrix.parent / "eggs" / platform).glob(dep + "*.egg")), (platform, dep)
    # What the servers of each platform are told to install.
    for platform, runtime in (("debian11-py27", "libldap-2.4-2"), ("debian12", "libldap-2.5-0")):
        listed = json.loads((matrix.parent / "eggs" / platform / "system-packages.json").read_text())
        assert listed["packages"] == [runtime] and listed["needed_by"][runtime][0]["package"] == "python-ldap", listed
    print(f"add python-ldap on 2 platforms: {took:.1f} s")


def test_bad_input_is_refused_before_anything_runs(tmp_path: Path) -> None:
    matrix = project(tmp_path / "p", (REPO / "matrix.yaml").read_text())
    unknown = builder(matrix, "add", "no-such-project-of-builder-xyz", *PLATFORMS)
    assert unknown.returncode == 3 and "is not on the index" in unknown.stderr, unknown.stderr
    wheels = builder(matrix, "add", "onnxruntime", *PLATFORMS)
    assert wheels.returncode == 14 and "has no sdist" in wheels.stderr and ".whl" in wheels.stderr, wheels.stderr
    assert matrix.read_text() == (REPO / "matrix.yaml").read_text()
    assert not (matrix.parent / "eggs").exists()


def test_a_header_no_package_provides_is_named_with_what_was_searched() -> None:
    platform = config.load(REPO / "matrix.yaml").platform("debian12")
    log = "psycopg/psycopgmodule.c:1:10: fatal error: no_such_builder_header.h: No such file or directory"
    lacks = words.missing(log)
    assert [str(m) for m in lacks] == ["header no_such_builder_header.h"]
    found = provides.search(platform, {str(m): m.query(platform.family) for m in lacks})
    assert found == {"header no_such_builder_header.h": []}
    # And the real thing is found: the same look-up `all` uses to name a missing soname's package.
    assert provides.soname_packages(platform, {"libpq.so.5"}) == {"libpq.so.5": "libpq5"}
    assert provides.best(provides.search(platform, {"h": words.Missing("header", "libxml/xmlversion.h", "").query("debian")})["h"],
                         prefer_dev=True) == "libxml2-dev"
    unknown = derive.AddError("x")
    assert unknown.exit_code == 14


def test_an_interrupted_add_leaves_the_matrix_and_the_output_untouched(tmp_path: Path) -> None:
    matrix = project(tmp_path / "p", without("psycopg2"))
    before = matrix.read_bytes()
    proc = start(matrix, "add", "psycopg2", *PLATFORMS)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("probe build"):
            break
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=300)[0]
    assert proc.returncode == 130, rest
    assert matrix.read_bytes() == before
    assert not list((matrix.parent / "eggs").glob("*/psycopg2-*"))

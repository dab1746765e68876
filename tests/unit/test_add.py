"""add's host side alone: reading build logs, sdists, releases, and splicing an entry into a matrix."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from packaging.version import Version

from builder.add import derive, entry, resolve, sdist, words
from builder.errors import ConfigError
from builder.fetch import IndexFile
from builder.matrix import load as config

REPO = Path(__file__).resolve().parents[2]
SHA = "ab" * 32


def test_a_build_log_names_what_it_lacked() -> None:
    log = "\n".join([
        "src/lxml/includes/etree_defs.h:14:10: fatal error: libxml/xmlversion.h: No such file or directory",
        "/usr/bin/ld: cannot find -lpq: No such file or directory",
        "Error: pg_config executable not found.",
        "sh: 1: xslt-config: not found",
        "Package libffi was not found in the pkg-config search path.",
        "gcc: fatal error: cannot execute 'cc1plus': execvp: No such file or directory",
        "Error: pg_config executable not found.",
    ])
    found = [(m.kind, m.name) for m in words.missing(log)]
    assert found == [("header", "libxml/xmlversion.h"), ("library", "pq"), ("tool", "pg_config"), ("tool", "xslt-config"),
                     ("pkg-config", "libffi"), ("compiler", "g++")]
    patterns = {m.name: m.pattern for m in words.missing(log)}
    assert patterns["libxml/xmlversion.h"] == "/include/(.+/)?libxml/xmlversion\\.h$"
    assert patterns["pq"] == "/lib/(x86_64-linux-gnu/)?libpq\\.(so|a)$"
    assert words.missing("running build_ext\nbuilding 'x' extension\n") == []


def _sdist(tmp_path: Path, files: dict[str, str]) -> Path:
    path = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"pkg-1.0/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_an_sdist_is_read_without_running_it(tmp_path: Path) -> None:
    path = _sdist(tmp_path, {
        "setup.py": "from setuptools import setup\nimport os\nsetup(name='pkg', setup_requires=['setuptools_scm>=3'],\n"
                    "      install_requires=['six'], python_requires='>=2.7', )\nif os.environ.get('REQUIRE_SPEEDUPS'): pass  # --with-libyaml\n",
        "pyproject.toml": "[build-system]\nrequires = ['setuptools', 'wheel', 'Cython<3']\n",
        "pkg/_speed.pyx": "", "pkg/_other.pyx": "", "pkg/_other.c": "",
        "PKG-INFO": "Metadata-Version: 1.1\nName: pkg\nClassifier: Programming Language :: Python :: 2.7\n",
    })
    facts = sdist.read(path)
    assert facts.build_system == ["setuptools", "wheel", "Cython<3"]
    assert facts.setup_requires == ["setuptools_scm>=3"]
    assert facts.install_requires == ["six"]
    assert facts.python_requires == ">=2.7"
    assert facts.pyx_without_c == ["pkg/_speed.pyx"]
    assert facts.uses_setuptools and facts.env == {"REQUIRE_SPEEDUPS": "1"} and "--with-libyaml" in facts.switches[0]
    assert facts.python_ok((2, 7)) is True and facts.python_ok((2, 6)) is False
    assert "directly" in sdist.egg_support(facts)


def test_a_computed_setup_requires_is_said_not_guessed(tmp_path: Path) -> None:
    facts = sdist.read(_sdist(tmp_path, {"setup.py": "from distutils.core import setup\nsetup(setup_requires=reqs())\n",
                                         "PKG-INFO": "Classifier: Programming Language :: Python :: 3\n"}))
    assert facts.setup_requires_dynamic and facts.setup_requires == []
    assert facts.python_ok((2, 7)) is False  # its classifiers name Python 3 only
    assert "shim" in sdist.egg_support(facts)


def _release(version: str, requires: str | None) -> resolve.Release:
    return resolve.Release(Version(version), version, IndexFile(f"pkg-{version}.tar.gz", "u", SHA, requires))


def test_each_python_gets_the_newest_release_that_supports_it() -> None:
    releases = [_release("2.9.10", ">=3.8"), _release("2.8.6", None), _release("2.8.5", ">=2.7")]
    assert resolve.pick(releases, "3.11", None, lambda r: pytest.fail("not read"))[0].text == "2.9.10"
    asked: list[str] = []

    def declared(release: resolve.Release) -> bool | None:
        asked.append(release.text)
        return False  # 2.8.6's own sdist says no

    assert resolve.pick(releases, "2.7", None, declared)[0].text == "2.8.5" and asked == ["2.8.6"]
    with pytest.raises(resolve.AddError, match="requires Python >=3.8, not the platform's 2.7"):
        resolve.pick(releases, "2.7", "2.9.10", declared)
    with pytest.raises(resolve.AddError, match="no release with an sdist supports Python 2.6"):
        resolve.pick([_release("1.0", ">=2.7")], "2.6", None, declared)


def test_an_entry_is_spliced_in_and_the_rest_of_the_file_kept_byte_for_byte() -> None:
    text = (REPO / "matrix.yaml").read_text()
    item = entry.CommentedMap()
    item["name"] = "psycopg2-extra"
    item["version"] = "1.0"
    item["sha256"] = SHA
    item["extensions"] = entry.flow_list([])
    item["overrides"] = {"debian12": {"system": {"debian": entry.flow_map({"build": entry.flow_list(["libffi-dev"]),
                                                                             "runtime": entry.flow_list(["libffi8"])})}}}
    new = entry.splice(text, item)
    assert new.startswith(text.rstrip("\n") + "\n")
    assert new.endswith("  - name: psycopg2-extra\n    version: '1.0'\n    sha256: " + SHA + "\n    extensions: []\n"
                        "    overrides:\n      debian12:\n        system:\n          debian: {build: [libffi-dev], runtime: [libffi8]}\n")
    matrix = config.loads(new, REPO / "matrix.yaml")
    package = matrix.package("psycopg2-extra")
    assert package.system_for("debian", "debian12").runtime == ("libffi8",)
    assert package.system_for("debian", "debian11-py27").runtime == ()
    # --update: the old entry's lines are replaced, nothing else moves.
    item["version"] = "2.0"
    updated = entry.splice(new, item, replace="psycopg2-extra")
    assert updated == new.replace("version: '1.0'", "version: '2.0'")
    replaced = entry.splice(text, item, replace="six")
    assert "name: six" not in replaced and "name: python-dateutil" in replaced
    assert replaced.index("name: psycopg2-extra") < replaced.index("name: python-dateutil")


def test_a_platform_system_must_be_the_platform_family() -> None:
    text = (REPO / "matrix.yaml").read_text() + (
        "  - name: extra\n    version: '1'\n    sha256: " + SHA + "\n"
        "    overrides:\n      debian12:\n        system: {redhat: {runtime: [libffi]}}\n")
    with pytest.raises(ConfigError, match="debian12 is a debian platform"):
        config.loads(text, REPO / "matrix.yaml")


def _one(version: str, runtime: list[str]) -> derive.PerPlatform:
    facts = sdist.Facts(f"pkg-{version}.tar.gz", has_setup_py=True, uses_setuptools=True)
    return derive.PerPlatform(_release(version, None), "test", facts, build=["libffi-dev"], runtime=runtime,
                              extensions=["_cffi_backend"])


def test_runtime_packages_that_differ_per_release_go_to_each_platform_s_overrides() -> None:
    matrix = config.load(REPO / "matrix.yaml")
    derived = derive.Derived("cffi", per={"debian11-py27": _one("1.15.1", ["libffi7"]), "debian12": _one("1.17.1", ["libffi8"])})
    item = derive.build_entry(matrix, derived, [])
    text = entry.splice((REPO / "matrix.yaml").read_text(), item)
    package = config.loads(text, REPO / "matrix.yaml").package("cffi")
    assert "system" not in item
    assert package.system_for("debian", "debian11-py27").runtime == ("libffi7",)
    assert package.system_for("debian", "debian12").runtime == ("libffi8",)
    assert package.spec_for("debian11-py27").source.version == "1.15.1"
    assert package.platforms == ("debian11-py27", "debian12")
    # The same lists on both: one family-level entry.
    same = derive.Derived("cffi", per={"debian11-py27": _one("1.17.1", ["libffi8"]), "debian12": _one("1.17.1", ["libffi8"])})
    assert dict(derive.build_entry(matrix, same, [])["system"]) == {"debian": {"build": ["libffi-dev"], "runtime": ["libffi8"]}}


def test_only_the_platform_s_or_a_helper_s_import_failures_are_proposed_for_skip_imports() -> None:
    assert words.proposable("dateutil.tzwin", "ModuleNotFoundError: No module named 'winreg'")
    assert words.proposable("simplejson.ordered_dict", "SyntaxError: invalid syntax")
    assert words.proposable("pycparser._build_tables", "IOError: [Errno 2] No such file or directory: '_c_ast.cfg'")
    assert not words.proposable("pkg.sub", "ModuleNotFoundError: No module named 'six'")  # a missing dependency
    assert not words.proposable("pkg._speedups", "ImportError: libpq.so.5: cannot open shared object file")
    assert not words.proposable("pkg", "RuntimeError: boom")  # the package itself

"""matrix.yaml is read into the model, or refused with the file, the line and what to fix."""
from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import ConfigError
from builder.matrix.load import load, loads
from builder.matrix.model import Base, BuildSpec, Limits, Pin, SystemPackages

A, B, C, D = "a" * 64, "b" * 64, "c" * 64, "d" * 64
ENV_VARS = ("BUILDER_INDEX_URL", "BUILDER_DEBIAN_MIRROR", "BUILDER_REGISTRY_MIRROR", "BUILDER_CACHE")

FULL = f"""\
settings:
  index_url: https://index.example/simple
  registry_mirror: mirror.example:5000
  output: out/eggs
  cache: /var/cache/builder

platforms:
  - name: debian11-py27
    family: debian
    base: {{debootstrap: bullseye}}
    python: /usr/bin/python2.7
    tools:
      - {{name: virtualenv, version: 16.7.12, sha256: {A}}}
    limits: {{memory: 512M, pids: 256, timeout: 600, output: 64m}}
  - name: centos6
    family: redhat
    base: {{image: "centos:6"}}
    image: ../shared-images/centos6
    python: /usr/bin/python2.6
    enabled: no
  - name: freebsd13
    backend: vagrant
    family: freebsd
    python: /usr/local/bin/python3
    machines: [fbsd-build, fbsd-runtime]

packages:
  - name: six
    version: 1.10
    sha256: {B.upper()}
    extensions: []
    formats: [wheel, egg]
  - name: PyYAML
    version: 5.4.1
    sha256: {C}
    path: vendor/PyYAML-5.4.1.tar.gz
    formats: [egg]
    build_requires:
      - {{name: Cython, version: 0.29.37, sha256: {D}, url: "https://files.example/Cython-0.29.37.tar.gz"}}
    setup_args: [--with-libyaml]
    env: {{PYYAML_FORCE_LIBYAML: 1, DEBUG: yes}}
    extensions: [yaml._yaml]
    test: python -c 'import yaml'
    system:
      debian: {{build: [libyaml-dev], runtime: [libyaml-0-2]}}
      redhat: {{runtime: [libyaml]}}
    depends: [SIX]
    platforms: [debian11-py27, centos6]
    overrides:
      centos6:
        version: 3.13
        sha256: {A}
        url: https://files.example/PyYAML-3.13.tar.gz
        env: {{PYYAML_FORCE_LIBYAML: "0"}}
      debian11-py27:
        skip_imports: [yaml.cyaml]
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def matrix_file(tmp_path: Path) -> Path:
    path = tmp_path / "project" / "matrix.yaml"
    path.parent.mkdir()
    path.write_text(FULL)
    return path


def test_full_document(matrix_file: Path) -> None:
    root = matrix_file.parent
    matrix = load(matrix_file)
    assert matrix.path == matrix_file and matrix.root == root

    assert matrix.settings.index_url == "https://index.example/simple"
    assert matrix.settings.debian_mirror is None
    assert matrix.settings.registry_mirror == "mirror.example:5000/"
    assert matrix.settings.output == root / "out" / "eggs"
    assert matrix.settings.cache == Path("/var/cache/builder")
    assert matrix.settings.work == root / ".builder" / "work"

    debian, centos, freebsd = matrix.platforms
    assert debian.base == Base("debootstrap", "bullseye") and debian.backend == "docker"
    assert debian.image_dir == root / "images" / "debian11-py27"
    assert debian.tools == (Pin("virtualenv", "16.7.12", A),)
    assert debian.limits == Limits(memory="512m", pids=256, timeout=600, output="64m")
    assert debian.limits.output_bytes == 64 * 1024 * 1024 and Limits().output_bytes == 1024**3
    assert debian.location == f"{matrix_file}:8"  # the file as it was given
    assert centos.base == Base("image", "centos:6") and centos.enabled is False
    assert centos.image_dir == root.parent / "shared-images" / "centos6"
    assert centos.limits == Limits()
    assert freebsd.backend == "vagrant" and freebsd.base is None
    assert freebsd.machines == ("fbsd-build", "fbsd-runtime")

    six, pyyaml = matrix.packages
    assert six.spec.source == Pin("six", "1.10", B)  # a YAML float keeps its text; sha256 lowercased
    assert six.formats == ("egg", "wheel") and six.spec.extensions == () and six.platforms is None
    assert six.location == f"{matrix_file}:28"

    source = Pin("PyYAML", "5.4.1", C, path=str(root / "vendor" / "PyYAML-5.4.1.tar.gz"))
    cython = Pin("Cython", "0.29.37", D, url="https://files.example/Cython-0.29.37.tar.gz")
    assert pyyaml.spec == BuildSpec(
        source=source,
        build_requires=(cython,),
        setup_args=("--with-libyaml",),
        env={"PYYAML_FORCE_LIBYAML": "1", "DEBUG": "yes"},
        extensions=("yaml._yaml",),
        test="python -c 'import yaml'",
    )
    assert pyyaml.formats == ("egg",)
    assert pyyaml.depends == ("six",)
    assert pyyaml.platforms == ("debian11-py27", "centos6")
    assert pyyaml.system_for("redhat") == SystemPackages((), ("libyaml",))
    assert pyyaml.system_for("debian") == SystemPackages(("libyaml-dev",), ("libyaml-0-2",))
    assert pyyaml.system_for("freebsd") == SystemPackages()
    assert pyyaml.location == f"{matrix_file}:33"

    # An override replaces only the keys it gives; a url replaces the top level's path.
    on_centos = pyyaml.spec_for("centos6")
    assert on_centos.source == Pin("PyYAML", "3.13", A, url="https://files.example/PyYAML-3.13.tar.gz")
    assert on_centos.env == {"PYYAML_FORCE_LIBYAML": "0"}
    assert on_centos.build_requires == (cython,) and on_centos.extensions == ("yaml._yaml",)
    on_debian = pyyaml.spec_for("debian11-py27")
    assert on_debian.source == source and on_debian.skip_imports == ("yaml.cyaml",)


def test_environment_overrides_settings(
    matrix_file: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BUILDER_INDEX_URL", "file:///srv/simple")
    monkeypatch.setenv("BUILDER_DEBIAN_MIRROR", "http://deb.example/debian")
    monkeypatch.setenv("BUILDER_REGISTRY_MIRROR", "")  # empty: as if unset
    monkeypatch.setenv("BUILDER_CACHE", "cache-here")
    settings = load(matrix_file).settings
    assert settings.index_url == "file:///srv/simple"
    assert settings.debian_mirror == "http://deb.example/debian"
    assert settings.registry_mirror == "mirror.example:5000/"
    assert settings.cache == tmp_path / "cache-here"  # relative to where builder runs


def test_invalid_environment_value_names_the_variable(matrix_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUILDER_INDEX_URL", "index.example/simple")
    with pytest.raises(ConfigError) as caught:
        load(matrix_file)
    assert caught.value.location == "environment BUILDER_INDEX_URL"
    assert "is not a URL" in str(caught.value)


def test_shipped_matrix_loads() -> None:
    matrix = load(Path(__file__).parents[2] / "matrix.yaml")
    assert {p.name for p in matrix.platforms} >= {"debian12"}
    psycopg2 = matrix.package("psycopg2")
    assert psycopg2.spec_for("debian11-py27").source.version == "2.8.6"
    assert psycopg2.spec_for("debian12").source.version == psycopg2.spec.source.version


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="matrix file not found: .*pass --matrix"):
        load(tmp_path / "matrix.yaml")


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "matrix.yaml"
    path.write_bytes(b"platforms:\n  - name: caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8") as caught:
        load(path)
    assert caught.value.location == f"{path}:2"  # the file as it was given


def test_merge_keys_and_empty_settings() -> None:
    text = f"""\
settings:
platforms:
  - &debian {{name: debian12, family: debian, base: {{debootstrap: bookworm}}, python: /usr/bin/python3}}
  - {{<<: *debian, name: debian13, base: {{debootstrap: trixie}}}}
packages:
  - {{name: six, version: 1.16.0, sha256: {A}}}
"""
    matrix = loads(text, Path("/srv/matrix.yaml"))
    assert matrix.settings.output == Path("/srv/eggs")
    assert matrix.platform("debian13").base == Base("debootstrap", "trixie")
    assert matrix.platform("debian13").python == "/usr/bin/python3"


# -- malformed documents ----------------------------------------------------------------------

PLATFORM = """\
platforms:
  - name: debian12
    family: debian
    base: {debootstrap: bookworm}
    python: /usr/bin/python3
"""
SIX = f"""\
packages:
  - name: six
    version: 1.16.0
    sha256: {A}
"""
VALID = PLATFORM + SIX  # lines 1-9; what the cases add starts at line 10
TWO_PLATFORMS = PLATFORM + """\
  - name: debian11-py27
    family: debian
    base: {debootstrap: bullseye}
    python: /usr/bin/python2.7
"""  # lines 1-9; packages start at line 10


def package(*lines: str, name: str = "PyYAML") -> str:
    body = "".join(f"    {line}\n" for line in lines)
    return f"  - name: {name}\n    version: 5.4.1\n    sha256: {B}\n{body}"


MALFORMED = [
    ("empty file", "", 1, "the file is empty"),
    ("only comments", "# nothing yet\n", 1, "the file is empty"),
    ("top level is a list", "- platforms\n", 1, "expected a mapping with platforms: and packages:"),
    ("yaml syntax error", VALID + "  - name: [PyYAML\n    version: 1\n", 11, "invalid YAML"),
    ("unknown top-level key", VALID + "setting: {}\n", 10, "did you mean 'settings'?"),
    ("missing packages", PLATFORM, 1, "missing required key 'packages'"),
    ("no platforms", "platforms: []\n" + SIX, 1, "at least one platform is needed"),
    ("unknown package key", VALID + package("fromats: [egg]"), 13, "did you mean 'formats'?"),
    ("string where a list goes", VALID + package("setup_args: --with-libyaml"), 13, "expected a list, got a string"),
    ("mapping where a string goes", VALID + package("test: {python: 1}"), 13, "expected a string, got a mapping"),
    ("boolean where a string goes", VALID.replace("1.16.0", "yes"), 8, 'quote it: "yes"'),
    ("missing required key", VALID + "  - name: PyYAML\n    version: 5.4.1\n", 10, "missing required key 'sha256'"),
    ("duplicate package", VALID + package(name="Six"), 10, "'six' (line 7) and 'Six' (line 10) are the same package"),
    ("duplicate key", VALID + package("test: a", "test: b"), 14, "'test' is given twice (also at line 13)"),
    ("sha256 too short", VALID.replace(A, "abc123"), 9, "sha256 must be 64 hex digits"),
    ("sha256 not hex", VALID.replace(A, "g" * 64), 9, "sha256 must be 64 hex digits"),
    ("unknown depends", VALID + package("depends: [sixx]"), 13, "did you mean 'six'?"),
    ("self-dependency", VALID + package("depends: [pyyaml]"), 13, "PyYAML depends on itself"),
    (
        "dependency cycle",
        PLATFORM + "packages:\n" + package("depends: [b]", name="a") + package("depends: [a]", name="b"),
        7,
        "dependency cycle: a -> b -> a",
    ),
    (
        "dependency not built on the platforms of its dependent",
        TWO_PLATFORMS + "packages:\n" + package("platforms: [debian12]", name="six") + package("depends: [six]"),
        18,
        "PyYAML needs six, which is not built for debian11-py27",
    ),
    ("unknown platform with suggestion", VALID + package("platforms: [debain12]"), 13, "did you mean 'debian12'?"),
    ("empty platforms", VALID + package("platforms: []"), 13, "lists no platform"),
    ("override of an unknown platform", VALID + package("overrides: {centos6: {test: x}}"), 13, "unknown platform 'centos6'"),
    (
        "override of a platform the package skips",
        TWO_PLATFORMS + "packages:\n" + package("platforms: [debian12]", "overrides:", "  debian11-py27: {test: x}"),
        16,
        "PyYAML is not built on debian11-py27",
    ),
    (
        "version override without sha256",
        VALID + package("overrides:", "  debian12:", "    version: 5.3"),
        15,
        "an override that changes version must give its sha256",
    ),
    ("unknown override key", VALID + package("overrides: {debian12: {formats: [egg]}}"), 13, "unknown key"),
    ("url and path", VALID + package("url: https://x.example/a.tar.gz", "path: a.tar.gz"), 14, "give url or path, not both"),
    ("url without scheme", VALID + package("url: x.example/a.tar.gz"), 13, "start it with http://"),
    ("bad format with suggestion", VALID + package("formats: [egg, whl]"), 13, "did you mean 'wheel'?"),
    ("no formats", VALID + package("formats: []"), 13, "at least one of egg, wheel"),
    ("repeated format", VALID + package("formats: [egg, egg]"), 13, "'egg' is listed twice"),
    ("extension not dotted", VALID + package("extensions: [yaml-_yaml]"), 13, "not a dotted module name"),
    ("env value is a list", VALID + package("env: {A: [1]}"), 13, "env.A: expected a string, got a list"),
    ("unknown family", VALID + package("system: {debain: {build: [x]}}"), 13, "did you mean 'debian'?"),
    ("OS package with a space", VALID + package("system: {debian: {build: ['a b']}}"), 13, "not an OS package name"),
    ("duplicate platform", VALID.replace("packages:", PLATFORM.replace("platforms:\n", "") + "packages:"), 6, "listed twice"),
    ("uppercase platform name", VALID.replace("name: debian12", "name: Debian12"), 2, "not a platform name"),
    ("relative python", VALID.replace("/usr/bin/python3", "python3"), 5, "not an absolute path"),
    ("unknown family of a platform", VALID.replace("family: debian", "family: redhta"), 3, "did you mean 'redhat'?"),
    ("docker platform without base", VALID.replace("    base: {debootstrap: bookworm}\n", ""), 2, "needs base:"),
    (
        "base with both kinds",
        VALID.replace("{debootstrap: bookworm}", "{debootstrap: bookworm, image: debian}"),
        4,
        "exactly one of debootstrap",
    ),
    (
        "vagrant without machines",
        VALID.replace("    base: {debootstrap: bookworm}\n", "    backend: vagrant\n"),
        2,
        "needs machines:",
    ),
    (
        "vagrant with a base",
        VALID.replace("    family:", "    backend: vagrant\n    machines: [b, r]\n    family:"),
        6,
        "base is for docker platforms",
    ),
    ("bad memory limit", VALID.replace("    python:", "    limits: {memory: 2x}\n    python:"), 5, "is not an amount of memory"),
    ("bad output limit", VALID.replace("    python:", "    limits: {output: lots}\n    python:"), 5, "'lots' is not a size"),
    ("zero pids", VALID.replace("    python:", "    limits: {pids: 0}\n    python:"), 5, "whole number from 1"),
    ("timeout as text", VALID.replace("    python:", "    limits:\n      timeout: soon\n    python:"), 6, "expected a whole number"),
    ("unknown limit", VALID.replace("    python:", "    limits: {cpu: 2}\n    python:"), 5, "unknown key"),
    ("enabled not a boolean", VALID.replace("    python:", "    enabled: maybe\n    python:"), 5, "expected true or false"),
    ("unknown settings key", "settings:\n  ouput: eggs\n" + VALID, 2, "did you mean 'output'?"),
    ("relative index_url", "settings: {index_url: simple}\n" + VALID, 1, "is not a URL"),
    ("recursive merge", VALID + "settings: &s {<<: *s}\n", 10, "refers back to itself"),
    ("non-string key", VALID + package("env: {[a]: b}"), 13, "keys must be names"),
]


@pytest.mark.parametrize(("text", "line", "fragment"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        loads(text, Path("matrix.yaml"))
    assert caught.value.location == f"matrix.yaml:{line}", str(caught.value)
    assert fragment in str(caught.value)
    assert caught.value.exit_code == 2


def test_error_names_the_key_path() -> None:
    with pytest.raises(ConfigError) as caught:
        loads(VALID + package("build_requires:", f"  - {{name: Cython, version: 0.29, sha256: {A}}}", "  - {name: x}"), Path("matrix.yaml"))
    assert caught.value.message == "matrix.yaml:15: packages[1].build_requires[1]: missing required key 'version'"

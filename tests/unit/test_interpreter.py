"""interpreter: a platform's Python built by builder into an OS package: the matrix keys, the
package metadata of each family, the key that decides a rebuild, and publishing to os/."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from builder.errors import ConfigError
from builder.machines import ospackage
from builder.matrix.load import load, loads
from builder.output import ospackages
from builder.output import publish as publisher

A, B, C = "a" * 64, "b" * 64, "c" * 64
ROOT = Path(__file__).resolve().parents[2]

INTERPRETER = f"""\
    interpreter:
      package: python27-local
      release: "3"
      configure: [--enable-unicode=ucs4, --without-ensurepip]
      modules: [ssl, zlib]
      sources:
        - {{name: Python, version: 2.7.18, url: "https://mirror.example/Python-2.7.18.tgz", sha256: {A}}}
        - {{name: OpenSSL, version: 1.1.1w, url: "https://mirror.example/openssl-1.1.1w.tar.gz", sha256: {B}}}
"""


def matrix(interpreter: str = INTERPRETER, python: str = "/usr/local/bin/python2.7", extra: str = "") -> str:
    return f"""\
platforms:
  - name: deb12-py27
    family: debian
    base: {{debootstrap: bookworm}}
    python: {python}
{extra}{interpreter}
packages:
  - {{name: six, version: 1.16.0, sha256: {C}}}
"""


def parse(text: str):  # noqa: ANN201 - the model's Interpreter
    platform = loads(text, Path("/m/matrix.yaml")).platforms[0]
    assert platform.interpreter is not None
    return platform


def test_the_block_is_read_with_its_defaults() -> None:
    interpreter = parse(matrix()).interpreter
    assert interpreter.package == "python27-local" and interpreter.release == "3"
    assert interpreter.prefix == "/usr/local"  # the default
    assert interpreter.python.version == "2.7.18" and interpreter.python.sha256 == A
    assert interpreter.openssl is not None and interpreter.openssl.sha256 == B
    assert interpreter.configure == ("--enable-unicode=ucs4", "--without-ensurepip")
    assert interpreter.modules == ("ssl", "zlib")
    assert [p.name for p in interpreter.pins] == ["Python", "OpenSSL"]


def test_a_platform_without_it_has_none() -> None:
    platform = loads(matrix(interpreter=""), Path("/m/matrix.yaml")).platforms[0]
    assert platform.interpreter is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.replace("package: python27-local", "package: Python27"), "interpreter.package: "),
        (lambda t: t.replace('release: "3"', "release: 3-1"), "interpreter.release: "),
        (lambda t: t.replace("configure: [", "configure: [--prefix=/opt, "), "is set by builder from prefix:"),
        (lambda t: t.replace("configure: [", "configure: [shared, "), "is not a configure flag"),
        (lambda t: t.replace("name: OpenSSL", "name: zlib"), "unknown source 'zlib'"),
        (lambda t: t.replace('url: "https://mirror.example/Python-2.7.18.tgz", ', ""), "needs url: or path:"),
        (lambda t: t.replace("package: python27-local", "package: python27-local\n      colour: red"), "colour"),
        (lambda t: t.replace('release: "3"', "prefix: /usr"), "holds the system's own files"),
        (lambda t: t.replace('release: "3"', "prefix: opt/py"), "is not a normal absolute path"),
    ],
)
def test_bad_values_are_refused_naming_the_key(change, message) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError) as caught:
        loads(change(matrix()), Path("/m/matrix.yaml"))
    assert message in str(caught.value)
    assert "matrix.yaml:" in str(caught.value)


def test_no_python_source_is_refused() -> None:
    text = matrix().split("        - {name: Python")[0] + f"        - {{name: OpenSSL, version: 1.1.1w, url: \"https://m.example/o.tgz\", sha256: {B}}}\n" + "\npackages:\n" + matrix().split("packages:\n")[1]
    with pytest.raises(ConfigError, match="no Python source"):
        loads(text, Path("/m/matrix.yaml"))


def test_python_must_be_the_one_built_into_the_prefix() -> None:
    with pytest.raises(ConfigError) as caught:
        loads(matrix(python="/usr/bin/python2.7"), Path("/m/matrix.yaml"))
    assert "is /usr/local/bin/python2.7, not /usr/bin/python2.7" in str(caught.value)
    assert "set python: /usr/local/bin/python2.7" in caught.value.hint


def test_vagrant_platforms_are_refused() -> None:
    text = matrix(extra="    backend: vagrant\n    machines: [a, b]\n").replace("    base: {debootstrap: bookworm}\n", "")
    with pytest.raises(ConfigError, match="docker platforms only, not vagrant"):
        loads(text, Path("/m/matrix.yaml"))


# -- the metadata of each family ---------------------------------------------------------------


def test_the_rpm_spec_provides_python_abi_and_keeps_to_the_prefix() -> None:
    spec = ospackage.rpm_spec(parse(matrix()).interpreter)
    lines = spec.splitlines()
    assert "Provides: python-abi = 2.7" in lines and "Provides: python(abi) = 2.7" in lines
    assert "AutoReq: yes" in lines and "AutoProv: no" in lines
    assert "Name: python27-local" in lines and "Version: 2.7.18" in lines and "Release: 3" in lines
    # The private OpenSSL is no requirement on the system's; old rpm reads the gzip payload.
    assert "%global __requires_exclude ^lib(ssl|crypto)\\.so\\." in lines
    assert "%define _binary_payload w9.gzdio" in lines and "%define _build_id_links none" in lines
    assert "%files -f %{filelist}" in lines and "%files devel -f %{devfilelist}" in lines


def test_without_a_private_openssl_nothing_is_excluded() -> None:
    interpreter = replace(parse(matrix()).interpreter, openssl=None)
    assert "__requires_exclude" not in ospackage.rpm_spec(interpreter)


def test_the_deb_control_files() -> None:
    interpreter = parse(matrix()).interpreter
    runtime = ospackage.deb_control(interpreter).splitlines()
    dev = ospackage.deb_control(interpreter, dev=True).splitlines()
    assert runtime[:3] == ["Package: python27-local", "Version: 2.7.18-3", "Architecture: amd64"]
    assert "Provides: python-abi-2.7" in runtime
    assert not any(line.startswith("Depends:") for line in runtime)  # the guest adds it from what links
    assert "Package: python27-local-dev" in dev and "Depends: python27-local (= 2.7.18-3)" in dev
    assert all(line.startswith(" ") for line in runtime[runtime.index(next(x for x in runtime if x.startswith("Description"))) + 1:])


def test_the_pkg_manifest() -> None:
    manifest = json.loads(ospackage.pkg_manifest(parse(matrix()).interpreter))
    assert manifest["name"] == "python27-local" and manifest["version"] == "2.7.18_3"
    assert manifest["prefix"] == "/usr/local" and manifest["annotations"] == {"python_abi": "2.7"}


def test_the_key_changes_with_every_input() -> None:
    platform = parse(matrix())
    key = ospackage.input_key(platform, "sha256:image")
    assert key == ospackage.input_key(platform, "sha256:image")
    interpreter = platform.interpreter
    changed = [
        ospackage.input_key(platform, "sha256:other"),
        ospackage.input_key(replace(platform, interpreter=replace(interpreter, release="4")), "sha256:image"),
        ospackage.input_key(replace(platform, interpreter=replace(interpreter, configure=())), "sha256:image"),
        ospackage.input_key(replace(platform, interpreter=replace(interpreter, openssl=None)), "sha256:image"),
        ospackage.input_key(replace(platform, interpreter=replace(interpreter, prefix="/opt/py")), "sha256:image"),
        ospackage.input_key(replace(platform, family="redhat"), "sha256:image"),
    ]
    assert key not in changed and len(set(changed)) == len(changed)


def test_the_shipped_matrix_builds_debian12_py27_this_way() -> None:
    platform = load(ROOT / "matrix.yaml").platform("debian12-py27")
    assert platform.enabled and platform.interpreter is not None
    assert platform.interpreter.python.sha256 == "da3080e3b488f648a3d7a4560ddee895284c3380b11d6de75edb986526b9a814"
    assert platform.interpreter.openssl is not None
    assert platform.interpreter.openssl.sha256 == "cf3098950cb4d853ad95c0841f1f9c6d3dc102dccfcacd521d93925208b76ac8"
    assert "ssl" in platform.interpreter.modules


# -- publishing to os/ -------------------------------------------------------------------------


def test_published_once_with_hashes_and_verified(tmp_path: Path) -> None:
    made = tmp_path / "made"
    made.mkdir()
    runtime, dev = made / "python27-local_2.7.18-1_amd64.deb", made / "python27-local-dev_2.7.18-1_amd64.deb"
    runtime.write_bytes(b"runtime package")
    dev.write_bytes(b"headers")
    output = tmp_path / "eggs"
    about = {"key": "k" * 64, "sources": {"Python": {"version": "2.7.18", "sha256": A}}, "build_seconds": 300}
    names = {runtime.name: "python27-local", dev.name: "python27-local-dev"}
    copied = ospackages.publish(output, "deb12-py27", [runtime, dev], about, names=names, version="2.7.18-1")
    assert [p.name for p in copied] == [runtime.name, dev.name]
    assert ospackages.interpreter(output, "deb12-py27") == (runtime.name, ospackages.read(output, "deb12-py27")[runtime.name])
    assert ospackages.read(output, "deb12-py27")[runtime.name]["package"] == "python27-local"
    assert ospackages.read(output, "deb12-py27")[dev.name]["version"] == "2.7.18-1"
    listed = ospackages.read(output, "deb12-py27")
    assert listed[runtime.name]["runtime"] is True and listed[dev.name]["runtime"] is False
    assert listed[runtime.name]["sources"] == about["sources"]
    assert (output / "deb12-py27" / "os" / runtime.name).read_bytes() == b"runtime package"
    assert ospackages.publish(output, "deb12-py27", [runtime, dev], about, names=names, version="2.7.18-1") == []  # unchanged
    assert publisher.verify(output) == []
    (output / "deb12-py27" / "os" / dev.name).write_bytes(b"changed")
    (output / "deb12-py27" / "os" / "stray_1_amd64.deb").write_bytes(b"?")
    kinds = {(p.path.name, p.kind) for p in publisher.verify(output)}
    assert kinds == {(dev.name, "tampered"), ("stray_1_amd64.deb", "unlisted")}


def test_images_made_from_an_interpreter_package_are_a_key_for_the_prestarted_test_guest(tmp_path: Path) -> None:
    # The docker backend keeps prestarted guests by (platform, images, role, limits, label).
    from builder.machines.base import Images

    deb = tmp_path / "python27-local_2.7.18-1_amd64.deb"
    made = Images("sha256:b", "sha256:r", (deb,), {"key": "k", "test": {"modules": ["ssl"]}})
    assert {made: 1}[Images("sha256:b", "sha256:r", (deb,), {"other": "facts"})] == 1
    assert made != Images("sha256:b", "sha256:r", ())

"""What build.py reads of an sdist's pyproject.toml, and what it refuses, on the host's Python 3.

The builds themselves run for real in tests/e2e/test_pep517.py; here are the decisions that
need no guest: the declared backend, the unmet requirements of an offline environment, Rust,
and the matrix's config_settings.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from builder.errors import ConfigError
from builder.guest import build
from builder.matrix.load import loads

# build.py takes its helpers from the top-level module `_common`, as it does in a guest.
GuestError = sys.modules["_common"].GuestError


def project(tmp_path: Path, text: str) -> Path:
    (tmp_path / "pyproject.toml").write_text(text)
    return tmp_path


def test_the_declared_backend_and_requires_are_read(tmp_path: Path) -> None:
    src = project(tmp_path, '[build-system]\nrequires = ["flit_core >=3.2,<4"]\nbuild-backend = "flit_core.buildapi"\n')
    assert build.build_system(str(src)) == ("flit_core.buildapi", ["flit_core >=3.2,<4"])


def test_no_backend_means_setuptools_legacy_and_no_file_means_none(tmp_path: Path) -> None:
    assert build.build_system(str(project(tmp_path, '[build-system]\nrequires = ["setuptools"]\n'))) == (
        "setuptools.build_meta:__legacy__", ["setuptools"])
    (tmp_path / "pyproject.toml").unlink()
    assert build.build_system(str(tmp_path)) is None


def test_invalid_toml_is_named(tmp_path: Path) -> None:
    with pytest.raises(GuestError, match="not valid TOML"):
        build.build_system(str(project(tmp_path, "[build-system\n")))


def test_unmet_requirements_are_named_with_why(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH="")
    with pytest.raises(GuestError) as caught:
        build.check_backend(sys.executable, str(tmp_path), env, "flit_core.buildapi",
                            ["no-such-backend-xyz>=1", "packaging>=1", "packaging<1", "gone; python_version < '3'"])
    message = str(caught.value)
    assert "no-such-backend-xyz>=1 (not installed)" in message and "packaging<1 (" in message
    assert "packaging>=1" not in message.replace("packaging>=1 (", "") and "gone" not in message
    assert "pin it in build_requires" in message


def test_met_requirements_pass(tmp_path: Path) -> None:
    build.check_backend(sys.executable, str(tmp_path), dict(os.environ), "x", ["packaging>=1", "pytest"])


@pytest.mark.parametrize("text", [
    '[build-system]\nrequires = ["maturin>=1,<2"]\nbuild-backend = "maturin"\n',
    '[build-system]\nrequires = ["setuptools", "setuptools-rust>=1.5"]\nbuild-backend = "setuptools.build_meta"\n',
])
def test_rust_is_refused_saying_what_it_needs(tmp_path: Path, text: str) -> None:
    with pytest.raises(GuestError, match="Rust toolchain .* crates vendored"):
        build.refuse_rust(build.build_system(str(project(tmp_path, text))))


def test_config_settings_keep_their_order_and_repeat_a_key_per_value(tmp_path: Path) -> None:
    text = """\
platforms:
  - {name: debian12, family: debian, base: {debootstrap: bookworm}, python: /usr/bin/python3}
packages:
  - name: x
    version: "1.0"
    sha256: %s
    config_settings: {setup-args: [-Da=1, -Db=2], cmake.define.GREETING: hi}
""" % ("a" * 64)
    matrix = loads(text, tmp_path / "matrix.yaml")
    assert matrix.packages[0].spec.config_settings == (
        ("setup-args", "-Da=1"), ("setup-args", "-Db=2"), ("cmake.define.GREETING", "hi"))
    with pytest.raises(ConfigError, match=r"matrix.yaml:7: packages\[0\].config_settings.*not a config setting name"):
        loads(text.replace("cmake.define.GREETING", "'bad key'"), tmp_path / "matrix.yaml")


def test_config_settings_reach_pip_as_dash_c(tmp_path: Path) -> None:
    argv = build.build_command("wheel", "python3", str(tmp_path), "/d", [], True, [["setup-args", "-Da=1"]])
    assert "--config-settings=setup-args=-Da=1" in argv and argv[-1] == str(tmp_path)

"""The deploy: part of matrix.yaml and requirement resolution, without servers."""
from __future__ import annotations

import hashlib
import json
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from builder.deploy.resolve import resolve
from builder.errors import ConfigError, NotPublished
from builder.matrix import deploy as targets
from builder.matrix import load as config
from builder.matrix.model import Hook, Target

MATRIX = """\
platforms:
  - name: debian11-py27
    family: debian
    base: {debootstrap: bullseye}
    python: /usr/bin/python2.7
packages:
  - {name: six, version: 1.16.0, sha256: %s}
  - {name: python-dateutil, version: 2.9.0.post0, sha256: %s, depends: [six]}
""" % ("a" * 64, "b" * 64)

TARGET = """
deploy:
  - name: web
    platform: debian11-py27
    hosts: [deploy@10.0.0.1, "deploy@10.0.0.2:2222"]
    ssh: {identity: keys/id, options: {StrictHostKeyChecking: accept-new}}
    root: /srv/web
    app: app
    requirements: [python-dateutil>=2]
    batch: 50%
    hooks:
      stop: {remote: "systemctl stop web"}
      out: {local: "lb-ctl out {host}"}
"""


def load(tmp_path: Path, deploy: str) -> tuple[Target, ...]:
    path = tmp_path / "matrix.yaml"
    path.write_text(MATRIX + deploy)
    return config.load(path).targets


def test_a_target_is_read_with_defaults(tmp_path: Path) -> None:
    (target,) = load(tmp_path, TARGET)
    assert target.python == "/usr/bin/python2.7" and target.format == "egg" and target.keep == 5
    assert [str(h) for h in target.hosts] == ["deploy@10.0.0.1", "deploy@10.0.0.2:2222"]
    assert target.hosts[1].identity == tmp_path / "keys" / "id"
    assert target.hosts[0].options == (("StrictHostKeyChecking", "accept-new"),)
    assert target.hooks["out"] == Hook("lb-ctl out {host}", "local")
    assert [len(b) for b in target.batch.split(target.hosts)] == [1, 1]
    assert target.app == tmp_path / "app"


@pytest.mark.parametrize(("change", "message", "hint"), [
    ("    batch: 50%", "    batchh: 50%", "did you mean 'batch'?"),
    ("platform: debian11-py27", "platform: debian11-py72", "did you mean 'debian11-py27'?"),
    ("stop: {remote:", "stpo: {remote:", "did you mean 'stop'?"),
    ("batch: 50%", "batch: 150%", "a number of hosts"),
    ("[python-dateutil>=2]", "[python-dateutil>>2]", "e.g. PyYAML==5.4.1"),
    ("root: /srv/web", "root: srv/web", "e.g. /srv/myapp"),
    ('"deploy@10.0.0.2:2222"', '"deploy@10.0.0.2:99999"', "e.g. deploy@web1.example"),
    ("stop: {remote: \"systemctl stop web\"}", "stop: {remote: a, local: b}", None),
])
def test_mistakes_name_the_line_and_suggest(tmp_path: Path, change: str, message: str, hint: str | None) -> None:
    text = TARGET.replace(change, message) if change in TARGET else TARGET
    assert text != TARGET
    with pytest.raises(ConfigError) as error:
        load(tmp_path, text)
    line = next(n for n, text_line in enumerate((MATRIX + text).splitlines(), 1) if message.strip() in text_line)
    assert f"matrix.yaml:{line}:" in str(error.value), str(error.value)
    if hint:
        assert hint in str(error.value), str(error.value)


def test_an_unknown_target_is_named_with_a_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "matrix.yaml"
    path.write_text(MATRIX + TARGET)
    with pytest.raises(ConfigError, match="did you mean 'web'"):
        targets.find(config.load(path), "wbe")


def _egg(folder: Path, name: str, requires: str = "") -> None:
    with zipfile.ZipFile(folder / name, "w") as egg:
        egg.writestr("EGG-INFO/PKG-INFO", "Metadata-Version: 1.1\n")
        if requires:
            egg.writestr("EGG-INFO/requires.txt", requires)


def _publish(tmp_path: Path, eggs: dict[str, str]) -> config.Matrix:
    path = tmp_path / "matrix.yaml"
    path.write_text(MATRIX)
    matrix = config.load(path)
    folder = matrix.settings.output / "debian11-py27"
    folder.mkdir(parents=True)
    artifacts = {}
    for name, requires in eggs.items():
        _egg(folder, name, requires)
        package, version = name.split("-")[:2]
        data = (folder / name).read_bytes()
        artifacts[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "format": "egg",
                           "package": package, "version": version, "cell": f"debian11-py27/{package}",
                           **dict.fromkeys(("source_sha256", "input_key", "build_image", "runtime_image", "builder_version", "finished_at"), "x")}
    (folder / "manifest.json").write_text(json.dumps({"manifest_version": 1, "platform": "debian11-py27",
                                                      "artifacts": artifacts, "cells": {}}))
    return matrix


def test_requirements_resolve_through_each_artifacts_own_metadata(tmp_path: Path) -> None:
    matrix = _publish(tmp_path, {
        "python_dateutil-2.9.0.post0-py2.7.egg": "six>=1.5\n\n[:python_version < '3']\nsix>=1.0\n\n[test]\npytest\n",
        "six-1.16.0-py2.7.egg": "",
    })
    found = resolve(matrix, "debian11-py27", "egg", ["python-dateutil>=2"])
    assert [a.file for a in found] == ["six-1.16.0-py2.7.egg", "python_dateutil-2.9.0.post0-py2.7.egg"]


def test_a_missing_dependency_is_named_with_the_selection_that_builds_it(tmp_path: Path) -> None:
    matrix = _publish(tmp_path, {"python_dateutil-2.9.0.post0-py2.7.egg": "six>=1.5\n"})
    with pytest.raises(NotPublished) as error:
        resolve(matrix, "debian11-py27", "egg", ["python-dateutil", "requests"])
    assert "six>=1.5 (needed by python_dateutil 2.9.0.post0): no published artifact" in error.value.message
    assert "python -m builder all --package six --platform debian11-py27" in (error.value.hint or "")
    assert f"declare requests in {matrix.label}'s packages" in (error.value.hint or "")
    assert matrix.label.endswith("/matrix.yaml")  # the path the matrix was loaded by, as given


def test_an_artifact_that_no_longer_matches_its_manifest_is_refused(tmp_path: Path) -> None:
    matrix = _publish(tmp_path, {"six-1.16.0-py2.7.egg": ""})
    (matrix.settings.output / "debian11-py27" / "six-1.16.0-py2.7.egg").write_bytes(b"changed")
    with pytest.raises(NotPublished, match="six-1.16.0-py2.7.egg does not match its manifest"):
        resolve(matrix, "debian11-py27", "egg", ["six"])


def test_the_application_packs_the_same_tree_to_the_same_sha256(tmp_path: Path) -> None:
    from builder.deploy.bundle import _app_archive

    (tmp_path / "app" / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "app" / "pkg" / "__init__.py").write_text("X = 1\n")
    (tmp_path / "app" / "pkg" / "__pycache__" / "junk.pyc").write_bytes(b"\0")
    (target,) = load(tmp_path, TARGET)
    matrix = config.load(tmp_path / "matrix.yaml")
    first = _app_archive(matrix, target).read_bytes()
    os.utime(tmp_path / "app" / "pkg" / "__init__.py", (1, 1))  # times do not count
    assert _app_archive(matrix, target).read_bytes() == first
    (tmp_path / "app" / "pkg" / "__init__.py").write_text("X = 2\n")
    assert _app_archive(matrix, target).read_bytes() != first
    with tarfile.open(_app_archive(matrix, target)) as tar:
        assert tar.getnames() == ["pkg/__init__.py"]


@pytest.mark.parametrize("host", ["de ploy@10.0.0.2", "deploy@@10.0.0.2", "deploy@10.0.0.2:22:33", "[::1", "-V",
                                  "deploy@-V", "-oProxyCommand=touch x"])
def test_a_host_that_is_not_user_host_port_is_refused_at_its_line(tmp_path: Path, host: str) -> None:
    text = TARGET.replace('"deploy@10.0.0.2:2222"', json.dumps(host))
    with pytest.raises(ConfigError) as error:
        load(tmp_path, text)
    line = next(n for n, text_line in enumerate((MATRIX + text).splitlines(), 1) if "hosts:" in text_line)
    assert f"matrix.yaml:{line}:" in str(error.value) and "not an ssh destination" in str(error.value), str(error.value)
    assert error.value.exit_code == 2


@pytest.mark.parametrize("argv", [
    *(["deploy", "web", f"--release={name}"] for name in ("../evil", "v1/x", "..", ".hidden", "v 1", "v1;touch x", "", "-v1")),
    ["rollback", "web", "--to", "../v3"], ["rollback", "web", "--to", ".."], ["rollback", "web", "--dry-run", "--to", "v1/x"],
])
def test_a_bad_release_name_is_refused_before_anything_connects(tmp_path: Path, argv: list[str],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from builder.__main__ import main

    # Should anything try to connect, it meets a closed port on this machine and nothing else.
    path = tmp_path / "matrix.yaml"
    path.write_text(MATRIX + TARGET.replace('[deploy@10.0.0.1, "deploy@10.0.0.2:2222"]', '["deploy@127.0.0.1:1"]'))
    assert main([argv[0], *argv[1:], "--matrix", str(path)]) == 2
    err = capsys.readouterr().err
    assert "is not a release name" in err and "cannot connect" not in err, err


def test_a_long_error_line_is_not_wrapped_when_not_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import builder.__main__ as cli
    from builder.errors import DeployError

    line = "web1: six-1.16.0-py2.7.egg in the cache has sha256 " + "e3b0c442" * 8 + ", expected " + "ab" * 32 + " " * 3 + "x" * 120

    def fail(*_: object) -> int:
        raise DeployError(line, hint="h" * 250)

    monkeypatch.setattr(cli, "_dispatch", fail)
    path = tmp_path / "matrix.yaml"
    path.write_text(MATRIX)
    assert cli.main(["releases", "web", "--matrix", str(path)]) == 10
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"error: {line}" and err[1] == "  hint: " + "h" * 250, err


def test_an_artifact_whose_metadata_names_an_invalid_requirement_is_refused(tmp_path: Path) -> None:
    # resolve refuses it, so the install order never has to skip one (builder/deploy/resolve.py).
    matrix = _publish(tmp_path, {"python_dateutil-2.9.0.post0-py2.7.egg": "six>>1.5\n", "six-1.16.0-py2.7.egg": ""})
    with pytest.raises(NotPublished, match="invalid requirement"):
        resolve(matrix, "debian11-py27", "egg", ["python-dateutil"])

"""Manifest signatures: keygen, sign, and openssl's own check of what builder signed."""
from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from builder.errors import BuilderError, ConfigError
from builder.output import signing


def test_keygen_makes_a_private_key_0600_and_its_public_half_and_never_overwrites(tmp_path: Path) -> None:
    key = tmp_path / "builder.key"
    public = signing.keygen(key)
    assert public == tmp_path / "builder.key.pub.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert signing.private_key(key).key_size == 3072
    before = key.read_bytes()
    with pytest.raises(BuilderError, match="already exists"):
        signing.keygen(key)
    assert key.read_bytes() == before


def test_sign_and_verify_with_either_half_and_refuse_tampering(tmp_path: Path) -> None:
    key, other = tmp_path / "k", tmp_path / "other"
    signing.keygen(key)
    signing.keygen(other)
    data = b'{"platform": "p"}\n'
    signature = signing.sign(signing.private_key(key), data)
    assert signing.valid(signing.public_key(key), data, signature)
    assert signing.valid(signing.public_key(signing.public_path(key)), data, signature)
    assert not signing.valid(signing.public_key(key), data + b" ", signature)
    assert not signing.valid(signing.public_key(other), data, signature)
    with pytest.raises(ConfigError, match="public key"):
        signing.private_key(signing.public_path(key))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")
def test_the_openssl_command_verifies_what_builder_signed(tmp_path: Path) -> None:
    key = tmp_path / "k"
    public = signing.keygen(key)
    manifest, sig = tmp_path / "manifest.json", tmp_path / "manifest.json.sig"
    manifest.write_bytes(b'{"artifacts": {}}\n')
    sig.write_bytes(signing.sign(signing.private_key(key), manifest.read_bytes()))
    check = ["openssl", "dgst", "-sha256", "-verify", str(public), "-signature", str(sig), str(manifest)]
    assert subprocess.run(check, capture_output=True).returncode == 0
    manifest.write_bytes(b'{"artifacts": {"x": 1}}\n')
    assert subprocess.run(check, capture_output=True).returncode != 0


# -- wired into publish, verify, merge and the command line ------------------------------------

def _signed_project(tmp_path: Path, key: Path | None) -> Path:
    from .test_system_packages import shipped_project

    matrix = shipped_project(tmp_path)
    if key is not None:
        matrix.write_text(matrix.read_text().replace("\nsettings:\n", f"\nsettings:\n  signing_key: {key}\n", 1))
    return matrix


def _cli(matrix: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import sys

    from .test_publish import child_env

    matrix_args = [] if args[0] == "keygen" else ["--matrix", str(matrix)]  # keygen needs no matrix
    return subprocess.run([sys.executable, "-m", "builder", *args, *matrix_args], cwd=matrix.parent,
                          env={**child_env(), **(env or {})}, capture_output=True, text=True, timeout=120, check=False)


def test_the_settings_name_the_key_and_where_it_was_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from builder.matrix.load import loads

    monkeypatch.delenv("BUILDER_SIGNING_KEY", raising=False)
    matrix = _signed_project(tmp_path, Path("keys/none.key"))
    settings = loads(matrix.read_text(), matrix).settings
    assert settings.signing_key == tmp_path / "keys" / "none.key"
    with pytest.raises(ConfigError) as caught:
        signing.keys(settings, sign=True)
    line = matrix.read_text().splitlines().index("  signing_key: keys/none.key") + 1
    assert caught.value.message == f"matrix.yaml:{line}: settings.signing_key: signing key {tmp_path}/keys/none.key does not exist"
    assert "python -m builder keygen" in (caught.value.hint or "")
    monkeypatch.setenv("BUILDER_SIGNING_KEY", str(tmp_path / "other.key"))
    settings = loads(matrix.read_text(), matrix).settings
    assert settings.signing_key == tmp_path / "other.key"
    with pytest.raises(ConfigError, match="^environment BUILDER_SIGNING_KEY: signing key .*other.key does not exist"):
        signing.keys(settings, sign=False)


def test_publish_signs_every_manifest_in_its_journal_and_verify_checks_it(tmp_path: Path) -> None:
    from builder.matrix.load import loads
    from builder.output.publish import SIGNATURE, verify

    from .test_system_packages import publish_everything

    key = tmp_path / "builder.key"
    signing.keygen(key)
    matrix = _signed_project(tmp_path / "p", key)
    publish_everything(matrix, ("debian11-py27", "debian12"))
    settings = loads(matrix.read_text(), matrix).settings
    keys = signing.keys(settings, sign=False)
    assert keys is not None
    for platform in ("debian11-py27", "debian12"):
        folder = settings.output / platform
        assert keys.valid((folder / "manifest.json").read_bytes(), (folder / SIGNATURE).read_bytes())
        assert not list(folder.glob(".*.tmp-*"))
    assert verify(settings.output, keys) == []
    # verify with the public half only (a machine that verifies but does not sign)
    assert verify(settings.output, signing.Keys(key, signing.public_key(signing.public_path(key)), None)) == []
    manifest = settings.output / "debian12" / "manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b'"platform"', b'"platform" ', 1))
    problems = verify(settings.output, keys)
    assert [(p.kind, p.path.name) for p in problems] == [("bad-signature", SIGNATURE)]
    other = tmp_path / "other.key"
    signing.keygen(other)
    others = verify(settings.output, signing.keys(_settings_with(settings, other), sign=False))
    assert {p.kind for p in others} == {"bad-signature"}
    assert {p.path.relative_to(settings.output).as_posix() for p in others} >= {
        "debian12/manifest.json.sig", "debian11-py27/manifest.json.sig", "debian12/sbom.cdx.json.sig",
        "debian12/provenance/pyyaml-5.4.1.intoto.json.sig"}
    (settings.output / "debian11-py27" / SIGNATURE).unlink()
    assert ("unsigned", "manifest.json") in [(p.kind, p.path.name) for p in verify(settings.output, keys)]


def _settings_with(settings: object, key: Path) -> object:
    import dataclasses

    return dataclasses.replace(settings, signing_key=key)  # type: ignore[type-var]


def test_a_signed_folder_is_never_republished_unsigned(tmp_path: Path) -> None:
    from builder.output.publish import SIGNATURE, publish

    from .test_publish import make_egg, record

    key = tmp_path / "k"
    signing.keygen(key)
    keys = signing.keys(_settings_with(_default_settings(), key), sign=True)  # type: ignore[arg-type]
    out = tmp_path / "eggs"
    publish(out, "p", [record("p/a", "a", "1", [make_egg(tmp_path, "a", "1")])], keys=keys)
    before = (out / "p" / "manifest.json").read_bytes(), (out / "p" / SIGNATURE).read_bytes()
    with pytest.raises(ConfigError, match="is signed"):
        publish(out, "p", [record("p/b", "b", "1", [make_egg(tmp_path, "b", "1")])])
    assert ((out / "p" / "manifest.json").read_bytes(), (out / "p" / SIGNATURE).read_bytes()) == before
    assert not (out / "p" / "b-1-py2.7-linux-x86_64.egg").exists()


def _default_settings() -> object:
    from builder.matrix.model import Settings

    return Settings()


def test_merge_checks_a_parts_signature_and_signs_what_it_publishes(tmp_path: Path) -> None:
    from builder.errors import BuilderError as Error
    from builder.matrix.load import loads
    from builder.output.merge import merge
    from builder.output.publish import SIGNATURE, verify

    from .test_system_packages import publish_everything

    key, other = tmp_path / "k", tmp_path / "other"
    signing.keygen(key)
    signing.keygen(other)
    part = tmp_path / "job"
    part.mkdir()
    publish_everything(_signed_project(part, key), ("debian11-py27",))
    main = _signed_project(tmp_path / "main", key)
    loaded = loads(main.read_text(), main)
    merge(loaded, [part], echo=lambda line: None)
    assert verify(loaded.settings.output, signing.keys(loaded.settings, sign=False)) == []
    assert (loaded.settings.output / "debian11-py27" / SIGNATURE).is_file()
    # The SBOM and the provenance statements come across as the part published them.
    for name in ("sbom.cdx.json", "manifest.json", "provenance/six-1.16.0.intoto.json"):
        assert (loaded.settings.output / "debian11-py27" / name).read_bytes() == (part / "eggs" / "debian11-py27" / name).read_bytes()
    # A part signed by another key is refused, naming its signature, before anything is written.
    bad = tmp_path / "bad"
    bad.mkdir()
    publish_everything(_signed_project(bad, other), ("debian12",))
    with pytest.raises(Error, match=f"{bad}/eggs/debian12/{SIGNATURE} does not verify"):
        merge(loaded, [bad], echo=lambda line: None)
    assert not (loaded.settings.output / "debian12").exists()


def test_keygen_on_the_command_line_and_a_bad_key_stops_publish_before_anything_runs(tmp_path: Path) -> None:
    matrix = _signed_project(tmp_path, tmp_path / "missing.key")
    made = _cli(matrix, "keygen", str(tmp_path / "new.key"))
    assert made.returncode == 0, made.stderr
    assert "key sha256 " in made.stdout and stat.S_IMODE((tmp_path / "new.key").stat().st_mode) == 0o600
    again = _cli(matrix, "keygen", str(tmp_path / "new.key"))
    assert again.returncode == 1 and "already exists" in again.stderr
    refused = _cli(matrix, "publish")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"settings.signing_key: signing key {tmp_path}/missing.key does not exist" in refused.stderr
    assert not (tmp_path / "eggs").exists() and not (tmp_path / ".builder").exists()
    public_only = _cli(matrix, "publish", env={"BUILDER_SIGNING_KEY": str(tmp_path / "new.key.pub.pem")})
    assert public_only.returncode == 2 and "is a public key: it can verify but not sign" in public_only.stderr

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

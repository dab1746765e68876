"""Detached signatures of each platform's manifest.json, checkable with a server's own openssl.

RSA (3072 bits) with PKCS#1 v1.5 padding over SHA-256: `openssl dgst -sha256 -verify KEY.pub.pem
-signature manifest.json.sig manifest.json` checks it with every OpenSSL from 0.9.8 (CentOS 5) to
3.x. Ed25519 would need OpenSSL 1.1.1, which CentOS 5 and 6 do not have. The cryptography
library does the work; nothing here is hand-made crypto.

`settings.signing_key` names a private key (PEM, PKCS#8, unencrypted: builder runs unattended)
to sign and verify, or a public key (`*.pub.pem`) on a machine that only verifies.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..errors import BuilderError, ConfigError
from ..matrix.model import Settings

SUFFIX = ".sig"
PUBLIC_SUFFIX = ".pub.pem"
BITS = 3072
_KEY_HINT = "make one with `python -m builder keygen FILE` and set settings.signing_key (or BUILDER_SIGNING_KEY) to it"


def public_path(private: Path) -> Path:
    return private.with_name(private.name + PUBLIC_SUFFIX)


def keygen(path: Path) -> Path:
    """A new RSA key in `path` (mode 0600) and its public half beside it; returns the public file."""
    public = public_path(path)
    for existing in (path, public):
        if os.path.lexists(existing):
            raise BuilderError(f"{existing} already exists: keygen never replaces a key",
                               hint="choose another file name, or move the old key away first")
    key = rsa.generate_private_key(public_exponent=65537, key_size=BITS)
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    _write_new(path, private_pem, 0o600)
    _write_new(public, public_pem, 0o644)
    return public


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise BuilderError(f"{path} already exists: keygen never replaces a key") from None
    except OSError as exc:
        raise BuilderError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        os.fchmod(fd, mode)  # whatever the umask
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"signing key {path} does not exist", hint=_KEY_HINT) from None
    except OSError as exc:
        raise ConfigError(f"cannot read signing key {path}: {exc.strerror or exc}", hint=_KEY_HINT) from exc


def private_key(path: Path) -> rsa.RSAPrivateKey:
    """The key to sign with; ConfigError naming the file if it is not a private RSA key."""
    data = _read(path)
    if b"PUBLIC KEY" in data:
        raise ConfigError(f"signing key {path} is a public key: it can verify but not sign",
                          hint="publish and merge need the private key; point settings.signing_key at it")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"signing key {path} is not an unencrypted PEM private key: {exc}", hint=_KEY_HINT) from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"signing key {path} is not an RSA key", hint=_KEY_HINT)
    return key


def public_key(path: Path) -> rsa.RSAPublicKey:
    """The key to verify with: the public half of a private key file, or a public key file."""
    data = _read(path)
    if b"PUBLIC KEY" not in data:
        return private_key(path).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise ConfigError(f"signing key {path} is not a PEM public key: {exc}", hint=_KEY_HINT) from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise ConfigError(f"signing key {path} is not an RSA key", hint=_KEY_HINT)
    return key


def sign(key: rsa.RSAPrivateKey, data: bytes) -> bytes:
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def valid(key: rsa.RSAPublicKey, data: bytes, signature: bytes) -> bool:
    try:
        key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class Keys:
    """The key of settings.signing_key, read once per command: the public half always, the
    private one where the file holds it (publish and merge need it; verify and deploy do not)."""

    path: Path
    public: rsa.RSAPublicKey
    private: rsa.RSAPrivateKey | None

    def sign(self, data: bytes) -> bytes:
        if self.private is None:
            raise ConfigError(f"signing key {self.path} is a public key: it can verify but not sign",
                              hint="publish and merge need the private key; point settings.signing_key at it")
        return sign(self.private, data)

    def valid(self, data: bytes, signature: bytes) -> bool:
        return valid(self.public, data, signature)

    def public_pem(self) -> bytes:
        return self.public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    @property
    def fingerprint(self) -> str:
        """sha256 of the public key's DER form: what host.py and the README name a key by."""
        der = self.public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return hashlib.sha256(der).hexdigest()


def keys(settings: Settings, *, sign: bool) -> Keys | None:
    """The settings' key, None when none is set. A file that is missing, unreadable, not an RSA
    key, or (with sign=True) only a public key is a ConfigError naming the file and where it was
    set (`matrix.yaml:4: settings.signing_key`, or the environment variable)."""
    path = settings.signing_key
    if path is None:
        return None
    try:
        if b"PUBLIC KEY" in _read(path):
            if sign:
                private_key(path)  # raises, saying it is a public key
            return Keys(path, public_key(path), None)
        private = private_key(path)
        return Keys(path, private.public_key(), private)
    except ConfigError as exc:
        raise ConfigError(exc.message, location=settings.signing_key_from or None, hint=exc.hint) from None

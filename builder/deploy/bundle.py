"""What one release sends to every host: the plan host.py follows and the files it names.

Every file goes by its sha256: the resolved artifacts, the application (its tree packed
reproducibly, or its sdist), the platform's virtualenv (Python 2 hosts) or pip (wheels) tool
fetched and verified like every source, and the check-imports script.
"""
from __future__ import annotations

import getpass
import gzip
import hashlib
import io
import json
import os
import socket
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import DeployError
from ..fetch import Fetcher, sha256_file
from ..matrix.model import Matrix, Target
from ..output import signing
from ..output.publish import SIGNATURE
from .resolve import Artifact, resolve

GUEST = Path(__file__).resolve().parent.parent / "guest"
HOST_SCRIPT = Path(__file__).resolve().parent.parent / "server" / "host.py"
IMPORTS_SCRIPT = GUEST / "imports.py"
_SKIP = ("__pycache__", ".git", ".hg", ".svn", ".tox", ".pytest_cache")


@dataclass(frozen=True)
class Bundle:
    release: str
    plan: dict[str, Any]
    files: dict[str, Path]  # sha256 -> local file
    artifacts: tuple[Artifact, ...]
    # The public key every host must trust (settings.signing_key's public half), None: unsigned.
    public_key: Path | None = None

    @property
    def fingerprint(self) -> str:
        return str(self.plan["fingerprint"])

    def plan_bytes(self, doctor: dict[str, Any] | None = None) -> bytes:
        """The plan; `doctor`, what the host check said of this host, goes into its release.json."""
        plan = self.plan if doctor is None else {**self.plan, "doctor": doctor}
        return (json.dumps(plan, indent=2, sort_keys=True) + "\n").encode()


def make(matrix: Matrix, target: Target, release: str) -> Bundle:
    artifacts = resolve(matrix, target.platform, target.format, target.requirements)
    files: dict[str, Path] = {a.sha256: a.path for a in artifacts}
    app = _app_archive(matrix, target)
    app_sha = sha256_file(app)
    files[app_sha] = app
    platform = matrix.platform(target.platform)
    fetcher = Fetcher(matrix.settings.cache, matrix.settings.index_url, matrix_file=matrix.label)
    tools: dict[str, dict[str, str]] = {}
    for pin in platform.tools:
        wanted = pin.name.lower() == "virtualenv" or (pin.name.lower() == "pip" and target.format == "wheel")
        if wanted:
            path = fetcher.fetch(pin)
            files[pin.sha256] = path
            tools[pin.name.lower()] = {"file": path.name, "sha256": pin.sha256}
    plan: dict[str, Any] = {
        "release": release,
        "target": target.name,
        "platform": target.platform,
        "format": target.format,
        "artifacts": [a.plan_entry() for a in artifacts],
        "app": {"file": app.name, "sha256": app_sha},
        "tools": tools,
        "builder": {"version": __version__, "by": f"{getpass.getuser()}@{socket.gethostname()}"},
    }
    if IMPORTS_SCRIPT.is_file():
        sha = sha256_file(IMPORTS_SCRIPT)
        files[sha] = IMPORTS_SCRIPT
        plan["imports"] = {"file": "imports.py", "sha256": sha}
    public_key = _signed(matrix, target, plan, files)
    # What makes two releases the same: the installed files and the application, nothing else
    # (not the time or who deployed), so a rerun of the same deploy is recognised.
    same = [target.format, sorted((a.file, a.sha256) for a in artifacts), app_sha]
    plan["fingerprint"] = hashlib.sha256(json.dumps(same).encode()).hexdigest()
    return Bundle(release, plan, files, tuple(artifacts), public_key)


def _signed(matrix: Matrix, target: Target, plan: dict[str, Any], files: dict[str, Path]) -> Path | None:
    """With a signing key set: the platform's manifest.json and its signature go to every host as
    they are published (host.py checks them there, with the key it trusts, before it installs
    anything), and the public key to trust. The deploy does not judge the signature itself: the
    host does. A platform published unsigned sends no signature, and a host that trusts a key
    refuses it."""
    keys = signing.keys(matrix.settings, sign=False)
    if keys is None:
        return None
    folder = matrix.settings.output / target.platform
    deploy_dir = matrix.settings.work / "deploy"
    deploy_dir.mkdir(parents=True, exist_ok=True)
    copies: dict[str, dict[str, str]] = {}
    for name in ("manifest.json", SIGNATURE):
        try:
            data = (folder / name).read_bytes()  # read once: what is sent is what was hashed
        except FileNotFoundError:
            return _public_key(keys, deploy_dir)
        sha = hashlib.sha256(data).hexdigest()
        path = deploy_dir / sha / name
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        files[sha] = path
        copies[name] = {"file": name, "sha256": sha}
    plan["signed"] = {"manifest": copies["manifest.json"], "signature": copies[SIGNATURE], "key": keys.fingerprint}
    return _public_key(keys, deploy_dir)


def _public_key(keys: signing.Keys, folder: Path) -> Path:
    path = folder / f"trusted-{keys.fingerprint[:16]}.pub.pem"
    if not path.exists():
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(keys.public_pem())
        os.replace(tmp, path)
    return path


def _app_archive(matrix: Matrix, target: Target) -> Path:
    """The application as one file: its sdist as given, or its tree packed with fixed times,
    owners and order, so the same tree always gives the same sha256."""
    if target.app.is_file():
        return target.app
    if not target.app.is_dir():
        raise DeployError(f"the application of {target.name} is not there: {target.app}",
                          hint=f"fix app: in the deploy target ({target.location})")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for folder, dirs, names in os.walk(target.app):
            dirs[:] = sorted(d for d in dirs if d not in _SKIP)
            for name in sorted(names):
                path = Path(folder) / name
                if name.endswith((".pyc", ".pyo")) or not path.is_file() or path.is_symlink():
                    continue
                info = tarfile.TarInfo(str(path.relative_to(target.app)))
                data = path.read_bytes()
                info.size = len(data)
                info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
                tar.addfile(info, io.BytesIO(data))
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0) as zipped:
        zipped.write(buffer.getvalue())
    deploy_dir = matrix.settings.work / "deploy"
    deploy_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(packed.getvalue()).hexdigest()
    path = deploy_dir / f"{target.name}-app-{digest[:16]}.tar.gz"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(packed.getvalue())
        os.replace(tmp, path)
    return path

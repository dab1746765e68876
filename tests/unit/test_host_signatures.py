"""host.py's side of signed manifests, run as the real script with this machine's openssl: the
key it trusts (once; another only when told), and the refusals before anything is installed.
(A whole signed deploy over ssh, on the real runtime images: tests/e2e/test_trust.py.)"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from builder.output import signing

from .test_deploy_host import host

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")


def _cache(root: Path, name: str, data: bytes) -> dict[str, str]:
    sha = hashlib.sha256(data).hexdigest()
    (root / "cache" / sha).mkdir(parents=True, exist_ok=True)
    (root / "cache" / sha / name).write_bytes(data)
    return {"file": name, "sha256": sha}


def _offer(root: Path, key: Path) -> str:
    offered = root / ".builder" / "offered.pub.pem"
    offered.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(signing.public_path(key), offered)
    return str(offered)


@pytest.fixture
def scene(tmp_path: Path) -> tuple[Path, Path, Path, dict]:
    """A root that trusts `key`, an egg in its cache, and a plan with the manifest signed by key."""
    key, other = tmp_path / "key", tmp_path / "other"
    signing.keygen(key)
    signing.keygen(other)
    root = tmp_path / "root"
    assert host("trust", str(root), _offer(root, key))["state"] == "installed"
    egg = _cache(root, "a-1-py3.11.egg", b"an egg")
    manifest = json.dumps({"platform": "p", "artifacts": {egg["file"]: {"sha256": egg["sha256"]}}}).encode()
    plan = {"release": "v1", "fingerprint": "f", "platform": "p", "format": "egg", "artifacts": [egg],
            "app": {"file": "app.tar.gz", "sha256": "0" * 64},
            "signed": {"manifest": _cache(root, "manifest.json", manifest),
                       "signature": _cache(root, "manifest.json.sig", signing.sign(signing.private_key(key), manifest))}}
    return root, key, other, plan


def _prepare(root: Path, plan: dict) -> dict:
    path = root / ".builder" / "plan.json"
    path.write_text(json.dumps(plan))
    return host("prepare", str(root), str(path))


def test_the_key_is_trusted_once_and_another_only_when_told(scene: tuple[Path, Path, Path, dict]) -> None:
    root, key, other, _ = scene
    trusted = root / ".builder" / "trusted" / "builder.pub.pem"
    assert trusted.read_bytes() == signing.public_path(key).read_bytes()
    assert host("trust", str(root), _offer(root, key))["state"] == "already trusted"
    refused = host("trust", str(root), _offer(root, other))
    assert not refused["ok"] and "trusts another key" in refused["error"] and "--trust-new-key" in refused["error"]
    assert trusted.read_bytes() == signing.public_path(key).read_bytes()
    replaced = host("trust", str(root), _offer(root, other), "replace")
    assert replaced["ok"] and replaced["state"].startswith("replaced ")
    assert trusted.read_bytes() == signing.public_path(other).read_bytes()
    assert len(list(trusted.parent.glob("replaced-*.pub.pem"))) == 1
    private = root / ".builder" / "offered.pub.pem"
    shutil.copyfile(key, private)
    assert "is not a PEM public key" in host("trust", str(root), str(private))["error"]


def test_an_untouched_signed_plan_passes_the_check(scene: tuple[Path, Path, Path, dict]) -> None:
    root, _, _, plan = scene
    result = _prepare(root, plan)
    # The check passed: prepare went on to the application, which this scene never cached.
    assert not result["ok"] and result["error"].startswith("app.tar.gz (sha256 000000000000) is not in "), result


@pytest.mark.parametrize("fault, expected", [
    ("unsigned", "refused: the manifest.json of p is unsigned, and this host trusts only manifests signed by"),
    ("tampered", "refused: manifest.json of p (sha256 "),
    ("other key", "refused: manifest.json of p (sha256 "),
    ("not listed", "refused: b-1-py3.11.egg is not in the signed manifest.json of p"),
    ("swapped", "refused: a-1-py3.11.egg has sha256 "),
])
def test_a_plan_the_signed_manifest_does_not_vouch_for_is_refused_naming_the_file(
        scene: tuple[Path, Path, Path, dict], fault: str, expected: str) -> None:
    root, _, other, plan = scene
    signed = plan["signed"]
    manifest = root / "cache" / signed["manifest"]["sha256"] / "manifest.json"
    if fault == "unsigned":
        del plan["signed"]
    elif fault == "tampered":
        changed = manifest.read_bytes().replace(b'"p"', b'"p" ')
        signed["manifest"] = _cache(root, "manifest.json", changed)
    elif fault == "other key":
        signed["signature"] = _cache(root, "manifest.json.sig", signing.sign(signing.private_key(other), manifest.read_bytes()))
    elif fault == "not listed":
        plan["artifacts"].append(_cache(root, "b-1-py3.11.egg", b"another egg"))
    elif fault == "swapped":  # the plan (which travels unsigned) names another file under a listed name
        plan["artifacts"] = [_cache(root, "a-1-py3.11.egg", b"an egg, swapped")]
    result = _prepare(root, plan)
    assert not result["ok"] and result["error"].startswith(expected), result
    assert not (root / "releases" / "v1").exists() and not (root / "current").exists()
    if fault in ("tampered", "other key"):
        assert "is not signed by the trusted key sha256" in result["error"]


def test_a_signed_plan_on_a_host_that_trusts_no_key_is_refused(scene: tuple[Path, Path, Path, dict]) -> None:
    root, _, _, plan = scene
    (root / ".builder" / "trusted" / "builder.pub.pem").unlink()
    assert "this host trusts no key" in _prepare(root, plan)["error"]
    del plan["signed"]  # neither side signs: the fleet does not sign, and that is allowed
    assert _prepare(root, plan)["error"].startswith("app.tar.gz (sha256 000000000000) is not in ")

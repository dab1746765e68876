"""Signed manifests from the index to the running release, against real servers of both Debian
runtime images (sshd added, reached only through 127.0.0.1): a real `builder all` of the shipped
matrix's Debian platforms in a project that signs, merged again elsewhere, deployed, and then
a tampered manifest, a manifest signed by another key, another key offered to a host, and an
artifact swapped in a host's cache are each refused on the host, naming the file, with `current`
untouched; the untouched release passes. The tests run in order on one small pool.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.machines.ssh import Connection
from builder.matrix.model import Settings
from builder.output import signing

from .conftest import REPO, builder, docker_run, project
from .sshd import isolated_network, keypair, sshd_image
from .test_deploy import APP, REQUIREMENTS, _runtime_image
from .test_deploy_faults import Server, _start

HOST_PY = REPO / "builder" / "server" / "host.py"
MARK = "@@builder-host-result@@ "


@dataclass
class Pool:
    matrix: Path
    eggs: Path
    key: Path
    other: Path  # a key no host trusts
    py27: Server
    py3: Server

    def run(self, *args: str, key: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {"BUILDER_SIGNING_KEY": str(key)} if key else None
        return builder(self.matrix, *args, env=env, timeout=900)

    def manifest(self, platform: str = "debian11-py27") -> Path:
        return self.eggs / platform / "manifest.json"


def _target(name: str, platform: str, server: Server, key: Path, app: Path, fmt: str) -> str:
    return f"""
  - name: {name}
    platform: {platform}
    format: {fmt}
    hosts: [{server.host}]
    ssh: {{identity: {key}, options: {{StrictHostKeyChecking: "no", UserKnownHostsFile: /dev/null}}}}
    root: /srv/demo
    app: {app}
    requirements: {REQUIREMENTS}
    keep: 10
"""


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    """A project that signs, its real `builder all` of the shipped matrix's Debian platforms, and
    one server of each runtime image."""
    tmp = tmp_path_factory.mktemp("trust")
    key, other = tmp / "builder.key", tmp / "other.key"
    signing.keygen(key)
    signing.keygen(other)
    text = (REPO / "matrix.yaml").read_text().replace("\nsettings:\n", f"\nsettings:\n  signing_key: {key}\n", 1)
    matrix = project(tmp / "project", text)
    built = builder(matrix, "all", "--platform", "debian11-py27,debian12")
    assert built.returncode == 0, built.stdout + built.stderr
    ssh_key = keypair(tmp)
    network = f"builder-trust-{os.getpid()}"
    isolated_network(network)
    servers: list[Server] = []
    try:
        servers = [_start(sshd_image(_runtime_image(matrix.parent, "debian11-py27")), ssh_key, network, None),
                   _start(sshd_image(_runtime_image(matrix.parent, "debian12")), ssh_key, network, None)]
        app = tmp / "app"
        shutil.copytree(APP, app)
        matrix.write_text(matrix.read_text() + "\ndeploy:"
                          + _target("signed27", "debian11-py27", servers[0], ssh_key, app, "egg")
                          + _target("signed3", "debian12", servers[1], ssh_key, app, "wheel"))
        yield Pool(matrix, matrix.parent / "eggs", key, other, *servers)
    finally:
        for server in servers:
            subprocess.run(["docker", "rm", "-f", server.name], capture_output=True, check=False)
        subprocess.run(["docker", "network", "rm", network], capture_output=True, check=False)


def _failed_line(done: subprocess.CompletedProcess[str], server: Server) -> str:
    return next((line.strip() for line in (done.stdout + done.stderr).splitlines()
                 if line.strip().startswith(f"failed: {server.host}")), done.stdout + done.stderr)


def test_publish_and_merge_sign_and_a_signed_release_installs_after_the_hosts_check(pool: Pool, tmp_path: Path) -> None:
    checked = pool.run("verify")
    assert checked.returncode == 0 and "every manifest is signed by" in checked.stdout, checked.stdout + checked.stderr
    # merge (as of CI jobs' folders) publishes the same signed folder again.
    other = project(tmp_path / "merged", pool.matrix.read_text())
    merged = builder(other, "merge", str(pool.eggs))
    assert merged.returncode == 0, merged.stdout + merged.stderr
    for platform in ("debian11-py27", "debian12"):
        for name in ("manifest.json", "sbom.cdx.json", "system-packages.json"):
            assert (other.parent / "eggs" / platform / name).read_bytes() == (pool.eggs / platform / name).read_bytes()
        assert sorted(p.name for p in (other.parent / "eggs" / platform / "provenance").iterdir()) == sorted(
            p.name for p in (pool.eggs / platform / "provenance").iterdir())
    assert builder(other, "verify").returncode == 0
    keys = signing.keys(Settings(signing_key=pool.key), sign=False)
    assert keys is not None
    fingerprint = keys.fingerprint
    for target, server in (("signed27", pool.py27), ("signed3", pool.py3)):
        done = pool.run("deploy", target, "--release", "v1")
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"[{server.host}] trusted key sha256 {fingerprint[:16]}: installed" in done.stdout, done.stdout
        assert server.sh("cat /srv/demo/.builder/trusted/builder.pub.pem") == signing.public_path(pool.key).read_text().strip()
        release = json.loads(server.sh("cat /srv/demo/releases/v1/release.json"))
        assert release["signature_checked"]["key"] == fingerprint, release
        assert server.sh("readlink /srv/demo/current") == "releases/v1"


def test_a_tampered_manifest_is_refused_on_the_host(pool: Pool) -> None:
    path = pool.manifest()
    original = path.read_bytes()
    # Still valid JSON, still listing every artifact with its sha256: only the signature tells.
    path.write_bytes(original.replace(b'"platform": "debian11-py27"', b'"platform":  "debian11-py27"', 1))
    assert path.read_bytes() != original
    try:
        done = pool.run("deploy", "signed27", "--release", "v2")
    finally:
        path.write_bytes(original)
    assert done.returncode == 10, done.stdout + done.stderr
    line = _failed_line(done, pool.py27)
    assert "(step prepare): prepare failed: refused: manifest.json of debian11-py27 (sha256 " in line, line
    assert "is not signed by the trusted key sha256" in line, line
    assert pool.py27.sh("readlink /srv/demo/current") == "releases/v1"
    assert pool.py27.sh("ls /srv/demo/releases") == "v1"


def test_a_manifest_signed_by_another_key_is_refused_on_the_host(pool: Pool) -> None:
    signature = pool.manifest("debian12").with_name("manifest.json.sig")
    original = signature.read_bytes()
    signature.write_bytes(signing.sign(signing.private_key(pool.other), pool.manifest("debian12").read_bytes()))
    try:
        done = pool.run("deploy", "signed3", "--release", "v2")
    finally:
        signature.write_bytes(original)
    assert done.returncode == 10, done.stdout + done.stderr
    line = _failed_line(done, pool.py3)
    assert "(step prepare): prepare failed: refused: manifest.json of debian12 (sha256 " in line, line
    assert pool.py3.sh("readlink /srv/demo/current") == "releases/v1"


def test_an_unsigned_manifest_is_refused_by_a_host_that_trusts_a_key(pool: Pool) -> None:
    signature = pool.manifest().with_name("manifest.json.sig")
    moved = signature.with_name("kept.sig")
    signature.rename(moved)
    try:
        done = pool.run("deploy", "signed27", "--release", "v2")
    finally:
        moved.rename(signature)
    assert done.returncode == 10, done.stdout + done.stderr
    line = _failed_line(done, pool.py27)
    assert "refused: the manifest.json of debian11-py27 is unsigned, and this host trusts only manifests signed by" in line
    assert pool.py27.sh("readlink /srv/demo/current") == "releases/v1"


def test_another_key_is_refused_by_the_host_unless_trusted_anew(pool: Pool) -> None:
    done = pool.run("deploy", "signed27", "--release", "v2", key=pool.other)
    assert done.returncode == 10, done.stdout + done.stderr
    line = _failed_line(done, pool.py27)
    assert "(step trust): trust failed: /srv/demo/.builder/trusted/builder.pub.pem trusts another key" in line, line
    assert "--trust-new-key" in line
    assert pool.py27.sh("cat /srv/demo/.builder/trusted/builder.pub.pem") == signing.public_path(pool.key).read_text().strip()
    # Trusting the new key is not enough: the manifests must be signed by it (see the README's rotation).
    anew = pool.run("deploy", "signed27", "--release", "v2", "--trust-new-key", key=pool.other)
    assert anew.returncode == 10 and "is not signed by the trusted key sha256" in _failed_line(anew, pool.py27)
    back = pool.run("deploy", "signed27", "--release", "v2", "--trust-new-key")
    assert back.returncode == 0, back.stdout + back.stderr
    assert pool.py27.sh("readlink /srv/demo/current") == "releases/v2"


def _host_py(server: Server, *args: str) -> dict:
    with Connection(server.dest) as conn:
        done = conn.run(["/usr/bin/python2.7", "-", *args], input=HOST_PY.read_bytes(), timeout=300)
    line = next(line for line in done.output.splitlines() if line.startswith(MARK))
    return json.loads(line[len(MARK):])


def test_an_artifact_swapped_in_the_hosts_cache_is_refused_on_the_host(pool: Pool) -> None:
    server = pool.py27
    release = json.loads(server.sh("cat /srv/demo/releases/v2/release.json"))
    six = next(a for a in release["artifacts"] if a["package"] == "six")
    other = next(a for a in release["artifacts"] if a["package"] != "six")
    cache = f"/srv/demo/cache/{six['sha256']}/{six['file']}"
    swap = f"cp /srv/demo/cache/{other['sha256']}/{other['file']} {cache}"
    plan = {key: release[key] for key in ("release", "fingerprint", "format", "artifacts", "app", "tools")}
    plan.update(release="v3", platform="debian11-py27", imports=release["imports_script"],
                signed=json.loads(server.sh("cat /srv/demo/.builder/plan-v2.json"))["signed"])
    server.sh(swap)
    # Whoever swapped the file rewrites the (unsigned) plan to match it: the signed manifest says no.
    swapped = [dict(a, sha256=other["sha256"]) if a["package"] == "six" else a for a in plan["artifacts"]]
    server.sh(f"cat > /srv/demo/.builder/plan-v3.json <<'EOF'\n{json.dumps(dict(plan, artifacts=swapped))}\nEOF")
    refused = _host_py(server, "prepare", "/srv/demo", "/srv/demo/.builder/plan-v3.json")
    assert not refused["ok"], refused
    assert refused["error"] == (f"refused: {six['file']} has sha256 {other['sha256']} in the plan, but the signed "
                                f"manifest.json of debian11-py27 lists {six['sha256']}"), refused
    # With the plan as builder made it, the swapped file's own hash gives it away: refused and removed.
    server.sh(f"cat > /srv/demo/.builder/plan-v3.json <<'EOF'\n{json.dumps(plan)}\nEOF")
    refused = _host_py(server, "prepare", "/srv/demo", "/srv/demo/.builder/plan-v3.json")
    assert not refused["ok"] and refused["error"].startswith(f"{six['file']} in the cache has sha256 "), refused
    assert server.sh("readlink /srv/demo/current") == "releases/v2"
    assert "v3" not in server.sh("ls /srv/demo/releases").split()
    # builder's own deploy re-hashes the cache first: it names the swapped file, copies it anew, and passes.
    server.sh(f"mkdir -p /srv/demo/cache/{six['sha256']} && cp /srv/demo/cache/{other['sha256']}/{other['file']} {cache}")
    done = pool.run("deploy", "signed27", "--release", "v3")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"the cached {six['file']} had sha256 {other['sha256']}, expected {six['sha256']}" in done.stdout, done.stdout
    assert server.sh("readlink /srv/demo/current") == "releases/v3"


def test_the_ansible_playbook_runs_the_same_verification(pool: Pool, tmp_path: Path) -> None:
    playbook = shutil.which("ansible-playbook")
    assert playbook, "ansible-core is in the test extra of pyproject.toml"
    server = pool.py3
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "[app_servers]\n"
        f"web1 ansible_host=127.0.0.1 ansible_port={server.dest.port} ansible_user=deploy "
        f"ansible_ssh_private_key_file={server.dest.identity} ansible_python_interpreter=/usr/bin/python3 "
        "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'\n"
    )
    env = {**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible"), "ANSIBLE_REMOTE_TEMP": "/tmp/.ansible"}

    def play(bundle: Path, release: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [playbook, "-i", str(inventory), str(REPO / "examples" / "deploy" / "ansible" / "deploy.yml"),
             "-e", f"bundle={bundle}", "-e", "root=/srv/demo", "-e", f"release={release}"],
            capture_output=True, text=True, env=env, timeout=600, check=False)

    tampered = tmp_path / "tampered"
    export = pool.run("deploy", "signed3", "--release", "a2", "--export", str(tampered))
    assert export.returncode == 0 and "trusted.pub.pem" in export.stdout, export.stdout + export.stderr
    plan = json.loads((tampered / "plan.json").read_text())
    old = plan["signed"]["manifest"]["sha256"]
    data = (tampered / "files" / old / "manifest.json").read_bytes().replace(b'"debian12"', b' "debian12"', 1)
    new = hashlib.sha256(data).hexdigest()
    shutil.rmtree(tampered / "files" / old)
    (tampered / "files" / new).mkdir()
    (tampered / "files" / new / "manifest.json").write_bytes(data)
    plan["signed"]["manifest"]["sha256"] = new
    (tampered / "plan.json").write_text(json.dumps(plan))
    refused = play(tampered, "a2")
    assert refused.returncode != 0
    assert "refused: manifest.json of debian12 (sha256 " in refused.stdout, refused.stdout
    assert server.sh("readlink /srv/demo/current") == "releases/v1"

    bundle = tmp_path / "bundle"
    export = pool.run("deploy", "signed3", "--release", "a1", "--export", str(bundle))
    assert export.returncode == 0, export.stdout + export.stderr
    done = play(bundle, "a1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert server.sh("readlink /srv/demo/current") == "releases/a1"
    assert json.loads(server.sh("cat /srv/demo/releases/a1/release.json"))["signature_checked"]["key"]


@pytest.mark.parametrize("platform", ["debian11-py27", "debian12"])
def test_the_runtime_images_own_openssl_verifies_the_signature(pool: Pool, platform: str, tmp_path: Path) -> None:
    """The check host.py runs, on the very runtime image the artifacts were tested in."""
    image = _runtime_image(pool.matrix.parent, platform)
    folder = tmp_path / uuid.uuid4().hex[:8]
    folder.mkdir()
    for name in ("manifest.json", "manifest.json.sig"):
        shutil.copyfile(pool.eggs / platform / name, folder / name)
    shutil.copyfile(signing.public_path(pool.key), folder / "key.pem")
    shutil.copyfile(signing.public_path(pool.other), folder / "other.pem")
    folder.chmod(0o755)
    check = ("openssl version; cd /v && openssl dgst -sha256 -verify key.pem -signature manifest.json.sig manifest.json"
             " && ! openssl dgst -sha256 -verify other.pem -signature manifest.json.sig manifest.json")
    done = docker_run(image, check, f"{folder}:/v:ro")
    assert done.returncode == 0, done.stdout + done.stderr
    # OpenSSL 1.1.1 says "Verification Failure", 3.x "Verification failure".
    assert done.stdout.splitlines()[1] == "Verified OK" and "verification failure" in done.stdout.lower(), done.stdout
    version = done.stdout.splitlines()[0]
    assert version.startswith("OpenSSL 1.1.1" if platform == "debian11-py27" else "OpenSSL 3."), version


# The fields the in-toto Statement v1 and SLSA provenance v1 specifications require, and their
# types: a minimal schema, as neither publishes one this suite can fetch.
PROVENANCE_SCHEMA = {
    "type": "object",
    "required": ["_type", "subject", "predicateType", "predicate"],
    "properties": {
        "_type": {"const": "https://in-toto.io/Statement/v1"},
        "subject": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["name", "digest"],
            "properties": {"name": {"type": "string"}, "digest": {
                "type": "object", "minProperties": 1, "additionalProperties": {"type": "string", "pattern": "^[0-9a-f]+$"}}}}},
        "predicateType": {"const": "https://slsa.dev/provenance/v1"},
        "predicate": {"type": "object", "required": ["buildDefinition", "runDetails"], "properties": {
            "buildDefinition": {"type": "object", "required": ["buildType", "externalParameters"], "properties": {
                "buildType": {"type": "string", "format": "uri", "pattern": "^[a-z][a-z0-9+.-]*:"},
                "externalParameters": {"type": "object"},
                "internalParameters": {"type": "object"},
                "resolvedDependencies": {"type": "array", "items": {"$ref": "#/$defs/resource"}}}},
            "runDetails": {"type": "object", "required": ["builder"], "properties": {
                "builder": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}},
                "metadata": {"type": "object"},
                "byproducts": {"type": "array", "items": {"$ref": "#/$defs/resource"}}}}}},
    },
    "$defs": {"resource": {"type": "object", "anyOf": [{"required": ["uri"]}, {"required": ["digest"]},
                                                       {"required": ["content"]}, {"required": ["name"]}]}},
}


@pytest.mark.parametrize("platform", ["debian11-py27", "debian12"])
def test_the_sbom_and_provenance_validate_and_list_the_runtime_os_packages_as_installed(pool: Pool, platform: str) -> None:
    import jsonschema
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    folder = pool.eggs / platform
    manifest = json.loads((folder / "manifest.json").read_text())
    sbom_text = (folder / "sbom.cdx.json").read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(sbom_text) is None
    sbom = json.loads(sbom_text)
    components = {c["bom-ref"]: c for c in sbom["components"]}
    statements = {p.name: json.loads(p.read_text()) for p in (folder / "provenance").glob("*.intoto.json")}
    assert len(statements) == len(manifest["cells"])
    keys = signing.keys(Settings(signing_key=pool.key), sign=False)
    assert keys is not None
    for name, statement in statements.items():
        jsonschema.validate(statement, PROVENANCE_SCHEMA)
        raw = (folder / "provenance" / name).read_bytes()
        assert keys.valid(raw, (folder / "provenance" / (name + ".sig")).read_bytes())
    assert keys.valid(sbom_text.encode(), (folder / "sbom.cdx.json.sig").read_bytes())
    image = _runtime_image(pool.matrix.parent, platform)
    installed = dict(line.split("\t") for line in docker_run(
        image, "dpkg-query -W -f '${Package}\\t${Version}\\n' libpq5 libyaml-0-2").stdout.splitlines())
    for artifact, entry in manifest["artifacts"].items():
        component = components[artifact]
        assert component["hashes"] == [{"alg": "SHA-256", "content": entry["sha256"]}]
        (source,) = component["pedigree"]["ancestors"]
        assert source["hashes"][0]["content"] == entry["source_sha256"] and source["version"] == entry["version"]
        assert source["externalReferences"][0]["url"].startswith(("http://", "https://", "file://"))
        needs = next(d for d in sbom["dependencies"] if d["ref"] == artifact).get("dependsOn", [])
        if entry["package"] in ("psycopg2", "PyYAML"):
            wanted = {"psycopg2": ("libpq5", "libpq.so.5"), "PyYAML": ("libyaml-0-2", "libyaml-0.so.2")}[entry["package"]]
            ref = f"os:{wanted[0]}@{installed[wanted[0]]}"
            assert needs == [ref], needs
            os_package = components[ref]
            assert os_package["version"] == installed[wanted[0]]
            assert {"name": "builder:soname", "value": wanted[1]} in os_package["properties"]
            assert os_package["purl"].startswith(f"pkg:deb/debian/{wanted[0]}@")
        if entry["package"] == "PyYAML":
            assert any(p["name"] == "builder:build-requirement" for p in component["properties"])  # Cython
        statement = next(s for s in statements.values() if artifact in {x["name"] for x in s["subject"]})
        definition = statement["predicate"]["buildDefinition"]
        assert definition["internalParameters"]["input_key"] == entry["input_key"]
        assert definition["internalParameters"]["build_commands"][entry["format"]], definition
        images = {d["annotations"]["role"]: d for d in definition["resolvedDependencies"] if "id" in d.get("annotations", {})}
        assert images["runtime-image"]["annotations"]["id"] == entry["runtime_image"]
        assert statement["predicate"]["runDetails"]["byproducts"][1]["annotations"]["status"] == "passed"
    # verify sees a changed SBOM and a changed statement.
    original = (folder / "sbom.cdx.json").read_bytes()
    (folder / "sbom.cdx.json").write_bytes(original.replace(b'"version": "', b'"version": "0', 1))
    try:
        found = pool.run("verify")
    finally:
        (folder / "sbom.cdx.json").write_bytes(original)
    assert found.returncode != 0 and f"tampered: {folder}/sbom.cdx.json does not match manifest.json and provenance/" in found.stdout
    assert pool.run("verify").returncode == 0

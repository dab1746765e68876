"""Cells on two Docker engines in one run: a platform with `docker_host:` has its images made and
its guests run on that engine, another platform on the default engine, both at once.

The second engine is a dockerd of its own, started here: its own socket, data root, exec root,
pid file and bridge (never `--bridge none`, which deletes docker0 from under the first engine).
It starts empty; the debootstrap base is moved into it with `docker save | docker load`, as a
user without a registry would seed a build box, and everything above the base is built there.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from .conftest import builder, project
from .sdists import PLATFORM, PY27_PLATFORM, no_strays, start  # noqa: F401 - no_strays: an autouse fixture

LABEL = "io.builder"
SIX = "1e61c37477a1626458e36f7b1d82aa5c9b094fa4802892072e49de9c60c4c926"  # 1.16.0, as shipped
MARKUPSAFE = "29872e92839765e546828bb7754a68c418d927cd064fd4708fab9fe9c8bb116b"  # 1.1.1, as shipped
BRIDGE_ADDRESS = "10.213.0.1/24"


@dataclass(frozen=True)
class SecondEngine:
    host: str  # unix:///.../docker.sock
    socket: Path
    client: docker.DockerClient
    tcp: str  # tcp://127.0.0.1:PORT, TLS only: the engine verifies the client's certificate
    certs: Path  # the client's ca.pem, cert.pem and key.pem for it
    stranger: Path  # a client's files signed by another CA: the engine refuses them


def _certificates(folder: Path) -> None:
    """A CA; the engine's certificate for 127.0.0.1 and a client's, both signed by it; and a
    client of another CA (stranger/). Throw-away keys for this test's TLS handshakes only."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def write(path: Path, key: ec.EllipticCurvePrivateKey | None, certificate: x509.Certificate) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        if key is not None:
            path.with_name(path.name.replace("cert", "key")).write_bytes(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    def authority(text: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        made = (x509.CertificateBuilder().subject_name(name(text)).issuer_name(name(text)).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .sign(key, hashes.SHA256()))
        return key, made

    def signed(by: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], text: str, server: bool
               ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(text)).issuer_name(by[1].subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                         else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                            critical=False)
        return key, builder.sign(by[0], hashes.SHA256())

    ca = authority("builder test CA")
    other = authority("another CA")
    write(folder / "ca.pem", None, ca[1])
    write(folder / "server" / "cert.pem", *signed(ca, "127.0.0.1", server=True))
    write(folder / "client" / "cert.pem", *signed(ca, "builder", server=False))
    (folder / "client" / "ca.pem").write_bytes((folder / "ca.pem").read_bytes())
    write(folder / "stranger" / "cert.pem", *signed(other, "stranger", server=False))
    (folder / "stranger" / "ca.pem").write_bytes((folder / "ca.pem").read_bytes())


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=600, check=check)


@pytest.fixture(scope="module")
def second_engine() -> Iterator[SecondEngine]:
    """A dockerd beside the shared one, on its own socket and bridge; stopped, its bridge and
    folders removed, whatever the test did."""
    if shutil.which("dockerd") is None or os.geteuid() != 0:
        pytest.fail("a second engine needs dockerd and root (this machine's set-up has both)")
    root = Path(tempfile.mkdtemp(prefix="engine-", dir="/tmp"))  # short: a socket path has ~100 bytes
    bridge = f"brb{os.getpid() % 100000}"
    socket = root / "docker.sock"
    log = open(root / "dockerd.log", "w")  # noqa: SIM115 - closed in finally
    daemon: subprocess.Popen[bytes] | None = None
    certs = root / "certs"
    _certificates(certs)
    port = _free_port()
    try:
        _run("ip", "link", "add", bridge, "type", "bridge")
        _run("ip", "addr", "add", BRIDGE_ADDRESS, "dev", bridge)
        _run("ip", "link", "set", bridge, "up")
        daemon = subprocess.Popen(
            ["dockerd", "--host", f"unix://{socket}", "--host", f"tcp://127.0.0.1:{port}", "--tlsverify",
             "--tlscacert", str(certs / "ca.pem"), "--tlscert", str(certs / "server" / "cert.pem"),
             "--tlskey", str(certs / "server" / "key.pem"), "--data-root", str(root / "data"), "--exec-root",
             str(root / "exec"), "--pidfile", str(root / "docker.pid"), "--bridge", bridge],
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                client = docker.DockerClient(base_url=f"unix://{socket}", timeout=900)
                client.ping()
                break
            except Exception:  # noqa: BLE001 - not up yet
                if daemon.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the second dockerd did not start: {(root / 'dockerd.log').read_text()[-2000:]}")
                time.sleep(0.2)
        # Seed it with the base only, without a registry; everything above is built on it.
        if subprocess.run(["docker", "image", "inspect", "builder/base:bookworm"], capture_output=True,
                          check=False).returncode != 0:  # a fresh machine: the default engine makes it first
            made = builder(project(root / "seed", PLATFORM + f'  - {{name: six, version: "1.16.0", sha256: {SIX}}}\n'), "images")
            assert made.returncode == 0, made.stdout + made.stderr
        saved = subprocess.Popen(["docker", "save", "builder/base:bookworm"], stdout=subprocess.PIPE)
        loaded = subprocess.run(["docker", "--host", f"unix://{socket}", "load"], stdin=saved.stdout,
                                capture_output=True, text=True, timeout=600, check=False)
        assert saved.wait(timeout=600) == 0 and loaded.returncode == 0, loaded.stderr
        yield SecondEngine(f"unix://{socket}", socket, client, f"tcp://127.0.0.1:{port}", certs / "client", certs / "stranger")
    finally:
        if daemon is not None:
            daemon.terminate()
            try:
                daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(timeout=60)
        log.close()
        _run("ip", "link", "del", bridge, check=False)
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                  if line.split()[1].startswith(str(root) + "/")]
        for mount in sorted(mounts, reverse=True):  # anything the daemon left mounted
            _run("umount", "-l", mount, check=False)
        shutil.rmtree(root, ignore_errors=True)


class Guests:
    """The cell guests each engine starts while a run goes on, from the engine's own events:
    (engine name, the guest's cell label, started, died) per container."""

    def __init__(self, engines: dict[str, docker.DockerClient]) -> None:
        self.seen: dict[tuple[str, str], dict[str, object]] = {}
        self._streams = []
        self._threads = []
        since = int(time.time()) - 1
        for name, client in engines.items():
            stream = client.events(since=since, decode=True, filters={"type": "container", "label": f"{LABEL}=cell"})
            self._streams.append(stream)
            thread = threading.Thread(target=self._read, args=(name, stream), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _read(self, engine: str, stream: Iterator[dict]) -> None:
        try:
            for event in stream:
                attributes = event.get("Actor", {}).get("Attributes", {})
                found = self.seen.setdefault((engine, event["id"]), {"cell": attributes.get(f"{LABEL}.cell"),
                                                                       "pid": attributes.get(f"{LABEL}.pid")})
                if event.get("Action") in ("start", "die"):
                    found[event["Action"]] = int(event["timeNano"]) / 1e9
        except Exception:  # noqa: BLE001 - the stream is closed at the end
            return

    def stop(self) -> None:
        time.sleep(1)  # the last die events
        for stream in self._streams:
            stream.close()

    def of(self, engine: str, pid: int) -> list[dict[str, object]]:
        return [g for (name, _), g in self.seen.items() if name == engine and g["pid"] == str(pid) and "start" in g]


def _matrix(host: str, tls: Path | None = None) -> str:
    six = f'  - {{name: six, version: "1.16.0", sha256: {SIX}, formats: [egg], extensions: []}}\n'
    markupsafe = (f"  - {{name: MarkupSafe, version: 1.1.1, sha256: {MARKUPSAFE}, formats: [egg], "
                  "extensions: [markupsafe._speedups], platforms: [debian12]}\n")
    remote = f"""
  - name: debian12
    family: debian
    base: {{debootstrap: bookworm}}
    python: /usr/bin/python3
    docker_host: {host}
""" + (f"    docker_tls: {tls}\n" if tls else "")
    platforms, packages = PY27_PLATFORM.split("packages:")
    return platforms.rstrip() + remote + "packages:\n" + six + markupsafe


def _overlap(a: list[dict[str, object]], b: list[dict[str, object]]) -> bool:
    return any(float(x["start"]) < float(y.get("die", 1e18)) and float(y["start"]) < float(x.get("die", 1e18))  # type: ignore[arg-type]
               for x in a for y in b)


def test_one_run_drives_two_engines_each_platform_on_its_own(tmp_path: Path, second_engine: SecondEngine) -> None:
    default = docker.from_env()
    matrix = project(tmp_path / "p", _matrix(second_engine.host))
    guests = Guests({"default": default, "second": second_engine.client})
    started = time.monotonic()
    proc = start(matrix, "all", "-j1")
    out, _ = proc.communicate(timeout=1800)
    wall = time.monotonic() - started
    guests.stop()
    assert proc.returncode == 0, out
    print(f"two-engine run: {wall:.1f} s")

    # Every guest of the remote platform ran on the second engine, every other one on the default.
    on_default, on_second = guests.of("default", proc.pid), guests.of("second", proc.pid)
    cells = {str(g["cell"]) for g in on_second}
    assert {"debian12/six", "debian12/markupsafe"} <= cells, (cells, out)
    assert all(c.startswith("debian12/") for c in cells), cells
    assert {str(g["cell"]) for g in on_default} >= {"debian11-py27/six"}, out
    assert all(str(g["cell"]).startswith("debian11-py27/") for g in on_default), on_default
    # One run drove both at once: guests of the two engines were alive at the same time.
    assert _overlap(on_default, on_second), (on_default, on_second)

    # Images were made where they run: what debian12's cells were tested in is on the second
    # engine (which started with the base only), debian11-py27's only on the default one.
    output = tmp_path / "p" / "eggs"
    remote = json.loads((output / "debian12" / "manifest.json").read_text())
    local = json.loads((output / "debian11-py27" / "manifest.json").read_text())
    for entry in remote["artifacts"].values():
        for role in ("build_image", "runtime_image"):
            assert second_engine.client.images.get(entry[role]).id == entry[role]
    for entry in local["artifacts"].values():
        for role in ("build_image", "runtime_image"):
            assert default.images.get(entry[role]).id == entry[role]
            with pytest.raises(docker.errors.ImageNotFound):
                second_engine.client.images.get(entry[role])
    tags = {t for image in second_engine.client.images.list() for t in image.tags}
    assert any(t.startswith("builder/debian12:runtime-") for t in tags), tags
    assert not any(t.startswith("builder/debian11-py27:") for t in tags), tags

    # The artifacts were copied back and published, each platform's own, and they passed.
    assert sorted(remote["cells"]) == ["debian12/markupsafe", "debian12/six"], remote["cells"]
    assert sorted(local["cells"]) == ["debian11-py27/six"], local["cells"]
    for platform, manifest in (("debian12", remote), ("debian11-py27", local)):
        for name in manifest["artifacts"]:
            assert (output / platform / name).is_file(), name
    assert any(n.startswith("MarkupSafe-1.1.1-py3.11-linux-x86_64") for n in remote["artifacts"]), remote["artifacts"]
    for cell in ("debian12/six", "debian12/markupsafe", "debian11-py27/six"):
        tested = json.loads((tmp_path / "p" / ".builder" / "work" / "cells" / cell / "test.json").read_text())
        assert tested["status"] == "passed", tested

    # Nothing of the run is left on either engine.
    for client in (default, second_engine.client):
        assert client.containers.list(all=True, filters={"label": f"{LABEL}.pid={proc.pid}"}) == []


def test_the_same_run_without_the_second_engine_says_which_engine_and_where(tmp_path: Path) -> None:
    """An engine that does not answer stops its platform's cells with its address and the
    matrix key, not a traceback; the cells on the default engine still go on."""
    missing = f"unix://{tmp_path}/nothing-here.sock"
    matrix = project(tmp_path / "p", _matrix(missing))
    proc = start(matrix, "all", "-j1")
    out, _ = proc.communicate(timeout=1800)
    assert proc.returncode != 0, out
    said = " ".join(out.split())  # the terminal's line wrapping aside
    assert f"the Docker engine at {missing} ({matrix}:12: platforms[1].docker_host) is not reachable" in said, out
    assert "[debian11-py27/six] publish: passed" in out, out
    assert not (tmp_path / "p" / "eggs" / "debian12").exists()


def test_an_engine_over_tcp_is_reached_with_tls_and_a_stranger_is_refused(tmp_path: Path, second_engine: SecondEngine) -> None:
    """tcp:// with the client's certificate: the cells run on that engine; the same address with
    a certificate of another CA fails its platform's cells at images, naming the engine."""
    matrix = project(tmp_path / "p", _matrix(second_engine.tcp, second_engine.certs))
    guests = Guests({"second": second_engine.client})
    # A CA bundle for other things in the environment (a proxy's, as here for the package
    # index) must not stand in for the engine's CA: requests would let it (docker-py #2433).
    bundle = {"REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt", "CURL_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"}
    started = time.monotonic()
    proc = start(matrix, "all", "--platform", "debian12", "--package", "six", env=bundle)
    out, _ = proc.communicate(timeout=1800)
    print(f"tcp+TLS run (debian12/six, images there already): {time.monotonic() - started:.1f} s")
    guests.stop()
    assert proc.returncode == 0, out
    assert {str(g["cell"]) for g in guests.of("second", proc.pid)} >= {"debian12/six"}, out
    manifest = json.loads((tmp_path / "p" / "eggs" / "debian12" / "manifest.json").read_text())
    assert sorted(manifest["cells"]) == ["debian12/six"]
    for entry in manifest["artifacts"].values():
        assert second_engine.client.images.get(entry["runtime_image"]).id == entry["runtime_image"]

    refused = project(tmp_path / "q", _matrix(second_engine.tcp, second_engine.stranger))
    proc = start(refused, "all", "--platform", "debian12", "--package", "six")
    out, _ = proc.communicate(timeout=600)
    said = " ".join(out.split())
    assert proc.returncode == 5, out  # every selected cell failed at images
    assert f"the Docker engine at {second_engine.tcp} ({refused}:12: platforms[1].docker_host) is not reachable" in said, out
    assert not (tmp_path / "q" / "eggs" / "debian12").exists()


def test_an_engine_over_ssh_through_the_openssh_client(tmp_path: Path, second_engine: SecondEngine) -> None:
    """ssh://USER@HOST:PORT: the OpenSSH client connects with the user's own ssh set-up (here a
    config naming the test server's key and host key policy) and runs `docker system dial-stdio` there; the
    server (a container on 127.0.0.1) holds the second engine's socket, so the cells land on it."""
    from .sshd import keypair, sshd_container, sshd_image

    key = keypair(tmp_path)
    volumes = [f"{second_engine.socket}:/var/run/docker.sock", f"{shutil.which('docker')}:/usr/local/bin/docker:ro"]
    with sshd_container(sshd_image("builder/base:bookworm"), key, user="root", volumes=volumes) as server:
        config = tmp_path / "ssh_config"
        # The SDK always passes a port (22 when the address has none), so the port is in the
        # address and the config gives the rest.
        config.write_text(f"Host 127.0.0.1\n  IdentityFile {key}\n  StrictHostKeyChecking no\n"
                          "  UserKnownHostsFile /dev/null\n  BatchMode yes\n  LogLevel ERROR\n")
        # The user's ~/.ssh/config, for this test only: an ssh first on PATH that reads this one.
        tools = tmp_path / "bin"
        tools.mkdir()
        (tools / "ssh").write_text(f'#!/bin/sh\nexec {shutil.which("ssh")} -F {config} "$@"\n')
        (tools / "ssh").chmod(0o755)
        matrix = project(tmp_path / "p", _matrix(f"ssh://root@127.0.0.1:{server.port}"))
        guests = Guests({"second": second_engine.client})
        started = time.monotonic()
        proc = start(matrix, "all", "--platform", "debian12", env={"PATH": f"{tools}:{os.environ['PATH']}"})
        out, _ = proc.communicate(timeout=1800)
        print(f"ssh run (debian12: six, MarkupSafe; images there already): {time.monotonic() - started:.1f} s")
        guests.stop()
    assert proc.returncode == 0, out
    assert {str(g["cell"]) for g in guests.of("second", proc.pid)} >= {"debian12/six", "debian12/markupsafe"}, out
    manifest = json.loads((tmp_path / "p" / "eggs" / "debian12" / "manifest.json").read_text())
    assert sorted(manifest["cells"]) == ["debian12/markupsafe", "debian12/six"]
    for entry in manifest["artifacts"].values():
        assert second_engine.client.images.get(entry["build_image"]).id == entry["build_image"]

"""Deploy as an operator meets trouble, against real servers (the debian11-py27 runtime image
with sshd, reached only through 127.0.0.1): a server that refuses, a full disk, a leftover of a
dead copy, a corrupted cache, a modified tool, a read-only root, a downgrade, a connection lost
in the middle of the hooks. Each failure must be named for what it is, with the exit status
that says so. The tests run in order on one small pool, as a real pool's history accumulates.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.machines.ssh import Destination

from .conftest import REPO, builder, project
from .sshd import _wait_for_sshd, isolated_network, keypair, sshd_image
from .test_deploy import APP, LABEL, REQUIREMENTS, _runtime_image


@dataclass
class Server:
    name: str
    dest: Destination

    @property
    def host(self) -> str:
        return f"deploy@127.0.0.1:{self.dest.port}"

    def sh(self, script: str, user: str = "deploy") -> str:
        return subprocess.run(["docker", "exec", "-u", user, self.name, "sh", "-c", script], capture_output=True,
                              text=True, check=False).stdout.strip()


@dataclass
class Pool:
    matrix: Path
    app: Path
    a: Server  # /srv/demo, and the same volume read-only at /srv/ro, and a tiny tmpfs at /srv/full
    b: Server
    balancer: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return builder(self.matrix, *args, timeout=900)

    def release(self, version: str) -> None:
        (self.app / "demoapp" / "__init__.py").write_text(f'VERSION = "{version}"\n')


def _start(image: str, key: Path, network: str, volume: str | None) -> Server:
    name = f"builder-deploy-faults-{uuid.uuid4().hex[:6]}"
    script = (
        'mkdir -p /home/deploy/.ssh && printf "%s" "$KEY" > /home/deploy/.ssh/authorized_keys && '
        "chown -R deploy /home/deploy/.ssh && chmod 700 /home/deploy/.ssh && chmod 600 /home/deploy/.ssh/authorized_keys && "
        "mkdir -p /srv/demo && chown deploy /srv/demo && ssh-keygen -A >/dev/null && exec /usr/sbin/sshd -D -e"
    )
    mounts = ["-v", f"{volume}:/srv/demo", "-v", f"{volume}:/srv/ro:ro",
              "--tmpfs", "/srv/full:size=192k,mode=1777"] if volume else []
    subprocess.run(
        ["docker", "run", "-d", "--init", "--name", name, "--label", LABEL, "--label", f"io.builder.pid={os.getpid()}",
         "--network", network, *mounts, "-e", f"KEY={key.with_suffix('.pub').read_text()}", "-p", "127.0.0.1::22",
         image, "sh", "-c", script],
        capture_output=True, text=True, check=True,
    )
    out = subprocess.run(["docker", "port", name, "22/tcp"], capture_output=True, text=True, check=True).stdout
    dest = Destination("127.0.0.1", user="deploy", port=int(out.split()[0].rsplit(":", 1)[1]), identity=key,
                       options=(("StrictHostKeyChecking", "no"), ("UserKnownHostsFile", "/dev/null")))
    _wait_for_sshd(dest)
    return Server(name, dest)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _target(name: str, hosts: list[str], key: Path, app: Path, root: str = "/srv/demo", batch: str = "1",
            hooks: str = "") -> str:
    return f"""
  - name: {name}
    platform: debian11-py27
    hosts: [{", ".join(hosts)}]
    ssh: {{identity: {key}, options: {{StrictHostKeyChecking: "no", UserKnownHostsFile: /dev/null}}}}
    root: {root}
    app: {app}
    requirements: {REQUIREMENTS}
    batch: {batch}
    keep: 10
{hooks}"""


@pytest.fixture(scope="module")
def pool(shipped: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    tmp = tmp_path_factory.mktemp("deploy-faults")
    published, _ = shipped
    text = (REPO / "matrix.yaml").read_text()
    matrix = project(tmp / "project", text.replace("\n  output: eggs", f"\n  output: {published / 'eggs'}", 1))
    key = keypair(tmp)
    network = f"builder-deploy-faults-{os.getpid()}"
    volume = f"builder-deploy-faults-{uuid.uuid4().hex[:8]}"
    isolated_network(network)
    subprocess.run(["docker", "volume", "create", "--label", LABEL, volume], capture_output=True, check=True)
    servers: list[Server] = []
    try:
        image = sshd_image(_runtime_image(published, "debian11-py27"))
        servers = [_start(image, key, network, volume), _start(image, key, network, None)]
        a, b = servers
        app = tmp / "app"
        shutil.copytree(APP, app)
        balancer = tmp / "balancer.log"
        closed = f"deploy@127.0.0.1:{_closed_port()}"
        lost = f"""    hooks:
      out: {{local: "echo out {{host}} >> {balancer}"}}
      stop: {{remote: "kill -9 -1"}}
      in: {{local: "echo in {{host}} >> {balancer}"}}
"""
        matrix.write_text(matrix.read_text() + "\ndeploy:"
                          + _target("one", [a.host], key, app)
                          + _target("down1", [a.host, closed, b.host], key, app)
                          + _target("down2", [a.host, closed, b.host], key, app, batch="2")
                          + _target("full", [a.host], key, app, root="/srv/full")
                          + _target("ro", [a.host], key, app, root="/srv/ro")
                          + _target("lost", [b.host], key, app, hooks=lost))
        yield Pool(matrix, app, a, b, balancer)
    finally:
        for server in servers:
            subprocess.run(["docker", "rm", "-f", server.name], capture_output=True, check=False)
        subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True, check=False)
        subprocess.run(["docker", "network", "rm", network], capture_output=True, check=False)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]


def test_a_refused_host_ends_the_roll_the_same_way_for_every_batch_size(pool: Pool) -> None:
    pool.release("v1")
    one = pool.run("deploy", "down1", "--release", "v1")
    assert one.returncode == 8, one.stdout + one.stderr  # only a connection failed
    assert f"[{pool.a.host}] current: v1 (the first release on this host)" in one.stdout, one.stdout
    closed = next(line for line in _lines(one.stderr) if line.startswith("failed: "))
    assert "(connection connect): cannot connect to" in closed and "Connection refused" in closed, one.stderr
    assert f"done: {pool.a.host} (switched)" in _lines(one.stderr)
    assert f"not started: {pool.b.host}" in _lines(one.stderr)
    two = pool.run("deploy", "down2", "--release", "v1")
    assert two.returncode == 8, two.stdout + two.stderr  # the same failure, the same status, batch 2
    assert f"done: {pool.a.host} (already current)" in _lines(two.stderr), two.stderr
    assert closed in _lines(two.stderr) and f"not started: {pool.b.host}" in _lines(two.stderr)
    assert pool.b.sh("ls -A /srv/demo") == ""


def test_a_full_disk_is_a_step_failing_on_the_host_not_a_connection(pool: Pool) -> None:
    done = pool.run("deploy", "full", "--release", "v1")
    assert done.returncode == 10, done.stdout + done.stderr
    failed = next(line for line in _lines(done.stderr) if line.startswith("failed: "))
    assert failed.startswith(f"failed: {pool.a.host} (step copy): copying to /srv/full/cache/.incoming/run-"), failed
    assert failed.endswith("failed (no space left on device)"), failed
    assert "done: none" in _lines(done.stderr) and "not started: none" in _lines(done.stderr)


def test_a_leftover_of_a_dead_copy_does_not_refuse_a_later_release(pool: Pool) -> None:
    # What a copy cut short leaves: an empty file under a sha256 the next release does not use.
    sha = hashlib.sha256(b"an artifact of another release").hexdigest()
    pool.a.sh(f"mkdir -p /srv/demo/cache/.incoming/{sha} && : > /srv/demo/cache/.incoming/{sha}/other-1.0.egg")
    pool.release("v2")
    done = pool.run("deploy", "one", "--release", "v2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert pool.a.sh("readlink /srv/demo/current") == "releases/v2"


def test_a_corrupted_cached_file_is_copied_again_in_the_same_run(pool: Pool) -> None:
    egg = pool.a.sh("ls /srv/demo/cache/*/six-1.16.0-py2.7.egg")
    assert egg, pool.a.sh("ls -R /srv/demo/cache")
    pool.a.sh(f"printf 'flipped' | dd of={egg} bs=1 seek=100 conv=notrunc 2>/dev/null")
    pool.release("v3")
    done = pool.run("deploy", "one", "--release", "v3")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the cached six-1.16.0-py2.7.egg had sha256 " in done.stdout, done.stdout
    assert "removed it, copying it again" in done.stdout and "copied 2 file(s): one-app-" in done.stdout, done.stdout
    assert pool.a.sh(f"sha256sum {egg}").split()[0] == Path(egg).parent.name


def test_a_modified_tool_on_the_host_is_noticed_and_never_used(pool: Pool) -> None:
    tool = pool.a.sh("ls -d /srv/demo/.builder/virtualenv-*")
    assert tool
    # A line run as soon as virtualenv.py starts.
    pool.a.sh(f"sed -i '2a open(\"/tmp/tampered\", \"w\")' {tool}/virtualenv.py")
    pool.release("v4")
    done = pool.run("deploy", "one", "--release", "v4")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{tool} was changed on this host (virtualenv.py was modified): unpacked it again" in done.stdout, done.stdout
    assert pool.a.sh("test -e /tmp/tampered && echo used") == ""
    assert "tampered" not in pool.a.sh(f"cat {tool}/virtualenv.py")


def test_a_read_only_root_is_named_and_can_still_be_listed(pool: Pool) -> None:
    listing = pool.run("releases", "ro")
    assert listing.returncode == 0, listing.stdout + listing.stderr
    assert f"{pool.a.host}: current v4; releases: v1, v2, v3 (previous), v4 (current)" in listing.stdout, listing.stdout
    pool.release("v5")
    done = pool.run("deploy", "ro", "--release", "v5")
    assert done.returncode == 10, done.stdout + done.stderr
    assert f"/srv/ro/.builder is not writable on {pool.a.host} (read-only file system)" in done.stderr, done.stderr
    assert f"failed: {pool.a.host} (step status): " in done.stderr, done.stderr


def test_deploying_an_older_release_is_a_downgrade_and_needs_saying_so(pool: Pool) -> None:
    pool.release("v2")  # the same tree as v2: the same release
    done = pool.run("deploy", "one", "--release", "v2")
    assert done.returncode == 10, done.stdout + done.stderr
    assert "v2 is older than the current v4" in done.stderr and "--allow-downgrade" in done.stderr, done.stderr
    assert pool.a.sh("readlink /srv/demo/current") == "releases/v4"
    forced = pool.run("deploy", "one", "--release", "v2", "--allow-downgrade")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert pool.a.sh("readlink /srv/demo/current") == "releases/v2"


def test_a_connection_lost_during_stop_leaves_the_host_out_of_the_balancer(pool: Pool) -> None:
    pool.balancer.write_text("")
    pool.release("v1")
    done = pool.run("deploy", "lost", "--release", "v1")  # its stop hook kills the session
    assert done.returncode == 8, done.stdout + done.stderr
    assert f"{pool.b.host}: left out of the balancer: connection lost during stop" in _lines(done.stderr), done.stderr
    assert f"failed: {pool.b.host} (connection stop): " in done.stderr
    assert pool.balancer.read_text().split() == ["out", pool.b.host]  # never put back in
    assert pool.b.sh("readlink /srv/demo/current") == ""  # the switch was never made

"""deploy, rollback and releases against real servers: containers of the debian11-py27 runtime
image (and one debian12) with sshd, reached only through ports published on 127.0.0.1, on a
bridge network with no way out (no masquerading, no traffic between containers). The artifacts
are those of the suite's real `builder all` of the shipped matrix. The tests run in order: each
starts from the state the previous one left, as releases follow each other on a real pool.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.machines.ssh import Destination

from .conftest import REPO, builder, project
from .sshd import _wait_for_sshd, isolated_network, keypair, sshd_image

LABEL = "io.builder-deploy.test"
APP = REPO / "examples" / "deploy" / "app"
REQUIREMENTS = "[PyYAML, simplejson, MarkupSafe, python-dateutil, psycopg2]"


@dataclass
class Server:
    name: str
    dest: Destination
    http: int  # the demo service's port, published on 127.0.0.1

    def sh(self, script: str) -> str:
        return subprocess.run(["docker", "exec", self.name, "sh", "-c", script], capture_output=True, text=True,
                              check=False).stdout.strip()

    def current(self) -> str:
        return self.sh("readlink /srv/demo/current")

    def answer(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/", timeout=1) as response:
                return json.loads(response.read())
        except Exception:  # noqa: BLE001 - down is down, whatever the reason
            return None


@dataclass
class Pool:
    matrix: Path
    app: Path
    servers: list[Server]  # three debian11-py27 servers
    debian12: Server
    balancer: Path

    def deploy(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return builder(self.matrix, *args, timeout=timeout)

    def set_app(self, version: str, extra: str = "", healthy: bool = True) -> None:
        (self.app / "demoapp" / "__init__.py").write_text(f'VERSION = "{version}"\n')
        server = (APP / "demoapp" / "server.py").read_text()
        server = server.replace("HEALTHY = True", f"HEALTHY = {healthy}")
        (self.app / "demoapp" / "server.py").write_text(server.replace("import yaml\n", f"import yaml\n{extra}"))


def _runtime_image(root: Path, platform: str) -> str:
    manifest = json.loads((root / "eggs" / platform / "manifest.json").read_text())
    return next(iter(manifest["artifacts"].values()))["runtime_image"]


def _start(image: str, key: Path, network: str, tag: str) -> Server:
    name = f"builder-deploy-test-{tag}-{uuid.uuid4().hex[:6]}"
    script = (
        'mkdir -p /home/deploy/.ssh && printf "%s" "$KEY" > /home/deploy/.ssh/authorized_keys && '
        "chown -R deploy /home/deploy/.ssh && chmod 700 /home/deploy/.ssh && chmod 600 /home/deploy/.ssh/authorized_keys && "
        "mkdir -p /srv/demo && chown deploy /srv/demo && ssh-keygen -A >/dev/null && exec /usr/sbin/sshd -D -e"
    )
    subprocess.run(
        # The image's io.builder label passes to the container, and builder runs remove such
        # containers unless their io.builder.pid is alive: ours is this test's.
        ["docker", "run", "-d", "--init", "--name", name, "--label", LABEL, "--label", f"io.builder.pid={os.getpid()}",
         "--network", network,
         "-e", f"KEY={key.with_suffix('.pub').read_text()}", "-p", "127.0.0.1::22", "-p", "127.0.0.1::8000",
         image, "sh", "-c", script],
        capture_output=True, text=True, check=True,
    )

    def port(inner: str) -> int:
        out = subprocess.run(["docker", "port", name, inner], capture_output=True, text=True, check=True).stdout
        return int(out.split()[0].rsplit(":", 1)[1])

    dest = Destination("127.0.0.1", user="deploy", port=port("22/tcp"), identity=key,
                       options=(("StrictHostKeyChecking", "no"), ("UserKnownHostsFile", "/dev/null")))
    _wait_for_sshd(dest)
    return Server(name, dest, port("8000/tcp"))


def _target(name: str, platform: str, servers: list[Server], key: Path, balancer: Path, app: Path, fmt: str,
            batch: str = "1") -> str:
    hosts = ", ".join(f"deploy@127.0.0.1:{s.dest.port}" for s in servers)
    service = "sh {root}/current/app/service.sh"
    return f"""
  - name: {name}
    platform: {platform}
    format: {fmt}
    hosts: [{hosts}]
    ssh: {{identity: {key}, options: {{StrictHostKeyChecking: "no", UserKnownHostsFile: /dev/null}}}}
    root: /srv/demo
    app: {app}
    requirements: {REQUIREMENTS}
    batch: {batch}
    keep: 4
    hooks:
      out: {{local: "echo out {{host}} >> {balancer}"}}
      stop: {{remote: "{service} stop {{root}} 2>/dev/null || true"}}
      start: {{remote: "{service} start {{root}}"}}
      smoke: {{remote: "{service} smoke {{root}}"}}
      in: {{local: "echo in {{host}} >> {balancer}"}}
"""


@pytest.fixture(scope="module")
def pool(shipped: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    tmp = tmp_path_factory.mktemp("deploy")
    # What the suite's one real `builder all` of the shipped matrix published (conftest's
    # `shipped`) is this project's output: deploy reads it and writes nothing there.
    published, _ = shipped
    text = (REPO / "matrix.yaml").read_text()
    assert "\n  output: eggs" in text
    matrix = project(tmp / "project", text.replace("\n  output: eggs", f"\n  output: {published / 'eggs'}", 1))
    key = keypair(tmp)
    network = f"builder-deploy-test-{os.getpid()}"
    isolated_network(network)
    servers: list[Server] = []
    try:
        py27 = sshd_image(_runtime_image(published, "debian11-py27"))
        servers = [_start(py27, key, network, f"py27-{n}") for n in range(3)]
        servers.append(_start(sshd_image(_runtime_image(published, "debian12")), key, network, "py311"))
        app = tmp / "app"
        shutil.copytree(APP, app)
        balancer = tmp / "balancer.log"
        text = matrix.read_text() + "\ndeploy:" + _target("demo", "debian11-py27", servers[:3], key, balancer, app, "egg") \
            + _target("demo12", "debian12", servers[3:], key, balancer, app, "wheel") \
            + _target("demo-pairs", "debian11-py27", servers[:3], key, balancer, app, "egg", batch="2")
        matrix.write_text(text)
        yield Pool(matrix, app, servers[:3], servers[3], balancer)
    finally:
        for server in servers:
            subprocess.run(["docker", "rm", "-f", server.name], capture_output=True, check=False)
        subprocess.run(["docker", "network", "rm", network], capture_output=True, check=False)


def test_dry_run_touches_nothing(pool: Pool) -> None:
    pool.set_app("v1")
    done = pool.deploy("deploy", "demo", "--release", "v1", "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    for server in pool.servers:
        assert f"deploy@127.0.0.1:{server.dest.port}" in done.stdout
        assert server.sh("ls -A /srv/demo") == ""
    assert "batch 3: " in done.stdout and "psycopg2-2.8.6-py2.7-linux-x86_64.egg" in done.stdout
    assert "service.sh smoke /srv/demo" in done.stdout
    # The commands as they would run: host.py from a pipe, switch and done to the release named.
    for step in ("status /srv/demo", "switch /srv/demo v1", "done /srv/demo v1", "prune /srv/demo 4"):
        assert f"'/usr/bin/python2.7 - {step}'  < " in done.stdout, done.stdout
    back = pool.deploy("rollback", "demo", "--dry-run")
    assert back.returncode == 0 and "PREVIOUS" not in back.stdout, back.stdout
    assert "- switch /srv/demo RELEASE'  < " in back.stdout, back.stdout
    assert "(RELEASE: the host's previous release, read there)" in back.stdout, back.stdout
    named = pool.deploy("rollback", "demo", "--dry-run", "--to", "v1")
    assert "- switch /srv/demo v1'  < " in named.stdout, named.stdout


def test_v1_goes_out_and_a_rerun_does_nothing(pool: Pool) -> None:
    pool.set_app("v1")
    done = pool.deploy("deploy", "demo", "--release", "v1")
    assert done.returncode == 0, done.stdout + done.stderr
    for server in pool.servers:
        assert server.current() == "releases/v1"
        facts = server.answer()
        assert facts and facts["version"] == "v1" and facts["python"] == "2.7", facts
        assert facts["libyaml"] and facts["simplejson_speedups"], facts
        manifest = json.loads(server.sh("cat /srv/demo/releases/v1/release.json"))
        assert {a["file"] for a in manifest["artifacts"]} >= {"six-1.16.0-py2.7.egg", "psycopg2-2.8.6-py2.7-linux-x86_64.egg"}
        assert manifest["imports_checked"]["checked"] and manifest["artifacts"][0]["cell"]
    on_py3 = pool.deploy("deploy", "demo12", "--release", "v1")
    assert on_py3.returncode == 0, on_py3.stdout + on_py3.stderr
    facts = pool.debian12.answer()
    assert facts and facts["version"] == "v1" and facts["python"] == "3.11" and facts["libyaml"], facts
    installed = json.loads(pool.debian12.sh("cat /srv/demo/releases/v1/release.json"))["installed"]
    assert {i["how"] for i in installed} == {"pip --no-index"} and len(installed) == 6, installed
    again = pool.deploy("deploy", "demo", "--release", "v1")
    assert again.returncode == 0 and again.stdout.count("already current: nothing to do") == 3, again.stdout


def test_v2_rolls_one_host_at_a_time_while_two_of_three_answer(pool: Pool) -> None:
    pool.set_app("v2")
    pool.balancer.write_text("")
    answering: list[int] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            answering.append(sum(1 for s in pool.servers if s.answer() is not None))
            time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        done = pool.deploy("deploy", "demo", "--release", "v2")
    finally:
        stop.set()
        poller.join()
    assert done.returncode == 0, done.stdout + done.stderr
    # Only the changed application travels: the hosts' caches have every artifact already.
    assert done.stdout.count("copied 1 file(s): demo-app-") == 3, done.stdout
    assert len(answering) > 20 and min(answering) >= 2, answering
    assert 2 in answering  # each host really was down for a moment
    assert all(s.answer()["version"] == "v2" for s in pool.servers)  # type: ignore[index]
    lines = pool.balancer.read_text().split()
    hosts = [f"deploy@127.0.0.1:{s.dest.port}" for s in pool.servers]
    assert lines == [word for h in hosts for word in ("out", h, "in", h)], lines


def test_v3_importing_what_nothing_provides_stops_before_any_switch(pool: Pool) -> None:
    pool.set_app("v3", extra="import nosuchmodule_anywhere\n")
    checked = pool.deploy("check-imports", str(pool.app), "--platform", "debian11-py27")
    assert checked.returncode == 9 and "nosuchmodule_anywhere" in checked.stdout, checked.stdout + checked.stderr
    done = pool.deploy("deploy", "demo", "--release", "v3")
    assert done.returncode == 10, done.stdout + done.stderr
    first = f"deploy@127.0.0.1:{pool.servers[0].dest.port}"
    assert first in done.stderr and "nosuchmodule_anywhere" in done.stderr, done.stderr
    assert "not started" in done.stderr
    for server in pool.servers:
        assert server.current() == "releases/v2"
        assert server.answer()["version"] == "v2"  # type: ignore[index]
        assert "v3" not in server.sh("ls /srv/demo/releases")


def test_v4_failing_its_smoke_test_switches_that_host_back(pool: Pool) -> None:
    pool.set_app("v4", healthy=False)
    done = pool.deploy("deploy", "demo", "--release", "v4")
    assert done.returncode == 10, done.stdout + done.stderr
    first = f"deploy@127.0.0.1:{pool.servers[0].dest.port}"
    assert f"failed: {first} (step smoke): step smoke failed after the switch to v4" in done.stderr, done.stderr
    assert "switched back to v2, restarted and put back" in done.stderr
    for server in pool.servers:
        assert server.current() == "releases/v2"
        assert server.answer()["version"] == "v2"  # type: ignore[index]
    assert "v4" not in pool.servers[1].sh("ls /srv/demo/releases")
    # A release name reused with other contents is refused before anything changes.
    reused = pool.deploy("deploy", "demo", "--release", "v1")
    assert reused.returncode == 10 and "already exists there with other contents" in reused.stderr, reused.stderr


def test_kill_9_during_a_switch_leaves_complete_releases_and_a_rerun_finishes(pool: Pool) -> None:
    pool.set_app("v5")
    second = f"deploy@127.0.0.1:{pool.servers[1].dest.port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, "-m", "builder", "deploy", "demo", "--release", "v5", "--matrix", str(pool.matrix)],
                            cwd=pool.matrix.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(f"[{second}] stop:"):
            time.sleep(0.3)  # inside the stop → switch → start sequence
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    for server in pool.servers:
        current = server.current()
        assert current in ("releases/v2", "releases/v5"), current
        assert server.sh(f"test -f /srv/demo/{current}/release.json && echo complete") == "complete"
    rerun = pool.deploy("deploy", "demo", "--release", "v5")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "already current: nothing to do" in rerun.stdout  # the first host finished before the kill
    for server in pool.servers:
        assert server.current() == "releases/v5" and server.answer()["version"] == "v5"  # type: ignore[index]


def test_rollback_to_v1_and_releases_shows_it(pool: Pool) -> None:
    # The same pool declared with batch: 2: two hosts at once, then the third.
    done = pool.deploy("rollback", "demo-pairs", "--to", "v1")
    assert done.returncode == 0, done.stdout + done.stderr
    first, second, third = (f"deploy@127.0.0.1:{s.dest.port}" for s in pool.servers)
    assert f"batch 1/2: {first}, {second}" in done.stdout and f"batch 2/2: {third}" in done.stdout, done.stdout
    for server in pool.servers:
        assert server.current() == "releases/v1" and server.answer()["version"] == "v1"  # type: ignore[index]
    listing = pool.deploy("releases", "demo")
    assert listing.returncode == 0, listing.stderr
    for server in pool.servers:
        line = next(line for line in listing.stdout.splitlines() if line.startswith(f"deploy@127.0.0.1:{server.dest.port}:"))
        assert "current v1" in line and "v1 (current)" in line and "v5 (previous)" in line, line
    # v3 failed its import check: nothing of it stays; v4 stays where it was made.
    assert pool.servers[0].sh("ls /srv/demo/releases").split() == ["v1", "v2", "v4", "v5"]
    assert pool.servers[2].sh("ls /srv/demo/releases").split() == ["v1", "v2", "v5"]


def test_an_ansible_playbook_runs_the_same_host_script(pool: Pool, tmp_path: Path) -> None:
    playbook = shutil.which("ansible-playbook")
    assert playbook, "ansible-core is in the test extra of pyproject.toml"
    pool.set_app("a1")
    bundle = tmp_path / "bundle"
    export = pool.deploy("deploy", "demo12", "--release", "a1", "--export", str(bundle))
    assert export.returncode == 0, export.stdout + export.stderr
    server = pool.debian12
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "[app_servers]\n"
        f"web1 ansible_host=127.0.0.1 ansible_port={server.dest.port} ansible_user=deploy "
        f"ansible_ssh_private_key_file={server.dest.identity} ansible_python_interpreter=/usr/bin/python3 "
        "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'\n"
    )
    env = {**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible"),
           "ANSIBLE_REMOTE_TEMP": "/tmp/.ansible"}
    done = subprocess.run(
        [playbook, "-i", str(inventory), str(REPO / "examples" / "deploy" / "ansible" / "deploy.yml"),
         "-e", f"bundle={bundle}", "-e", "root=/srv/demo", "-e", "release=a1"],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert server.current() == "releases/a1"
    facts = server.answer()
    assert facts and facts["version"] == "a1" and facts["libyaml"], facts
    manifest = json.loads(server.sh("cat /srv/demo/releases/a1/release.json"))
    assert manifest["imports_checked"]["checked"] and manifest["format"] == "wheel"

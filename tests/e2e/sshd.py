"""Test machines that answer ssh: a container with sshd and a key made for the test, reached only
through a port published on 127.0.0.1. Shared by the ssh transport's, the vagrant backend's and
deploy's tests."""
from __future__ import annotations

import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from builder.machines.ssh import Destination

LABEL = "io.builder.test"

DOCKERFILE = """\
ARG BASE
FROM ${BASE}
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \\
        openssh-server >/dev/null && rm -rf /var/lib/apt/lists/* && mkdir -p /run/sshd \\
    && useradd -m -s /bin/sh deploy
"""


def isolated_network(name: str) -> str:
    """A bridge with no masquerading and no traffic between its containers: ports published on
    127.0.0.1 reach the test servers, and the servers reach nothing. Labelled as the suite's own;
    the test that makes it removes it by name."""
    subprocess.run(["docker", "network", "create", "--label", LABEL,
                    "-o", "com.docker.network.bridge.enable_ip_masquerade=false",
                    "-o", "com.docker.network.bridge.enable_icc=false", name], capture_output=True, check=True)
    return name


def sshd_image(base: str) -> str:
    """`base` plus sshd and a `deploy` user; made once per base image and reused."""
    base_id = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Id}}", base], capture_output=True, text=True, check=True
    ).stdout.strip()
    tag = f"builder-test/sshd:{base_id.split(':')[-1][:16]}"
    have = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False)
    if have.returncode != 0:
        with tempfile.TemporaryDirectory() as context:
            Path(context, "Dockerfile").write_text(DOCKERFILE)
            subprocess.run(
                ["docker", "build", "-q", "--build-arg", f"BASE={base}", "-t", tag, context],
                capture_output=True, text=True, check=True, timeout=900,
            )
    return tag


def keypair(folder: Path) -> Path:
    key = folder / "id_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


@contextmanager
def sshd_container(image: str, key: Path, user: str = "deploy", name: str | None = None,
                   volumes: Sequence[str] = ()) -> Iterator[Destination]:
    """A running server (with `volumes`, docker run -v's); yields the destination to reach it as
    `user` with `key`."""
    name = name or f"builder-test-sshd-{uuid.uuid4().hex[:8]}"
    public = key.with_suffix(".pub").read_text()
    home = "/root" if user == "root" else f"/home/{user}"
    script = (
        f"mkdir -p {home}/.ssh && printf '%s' \"$KEY\" > {home}/.ssh/authorized_keys && "
        f"chown -R {user} {home}/.ssh && chmod 700 {home}/.ssh && chmod 600 {home}/.ssh/authorized_keys && "
        "ssh-keygen -A >/dev/null && exec /usr/sbin/sshd -D -e"
    )
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "--label", LABEL, "-e", f"KEY={public}",
         "-p", "127.0.0.1::22", *(a for v in volumes for a in ("-v", v)), image, "sh", "-c", script],
        capture_output=True, text=True, check=True,
    )
    try:
        port = subprocess.run(
            ["docker", "port", name, "22/tcp"], capture_output=True, text=True, check=True
        ).stdout.split()[0].rsplit(":", 1)[1]
        dest = Destination(
            host="127.0.0.1", user=user, port=int(port), identity=key,
            options=(("StrictHostKeyChecking", "no"), ("UserKnownHostsFile", "/dev/null")),
        )
        _wait_for_sshd(dest)
        yield dest
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def _wait_for_sshd(dest: Destination, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        probe = subprocess.run(
            ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=2", "-o", "LogLevel=ERROR",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-i", str(dest.identity), "-p", str(dest.port), f"{dest.user}@{dest.host}", "true"],
            capture_output=True, text=True, check=False,
        )
        if probe.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"sshd in the test container did not answer: {probe.stderr}")
        time.sleep(0.3)

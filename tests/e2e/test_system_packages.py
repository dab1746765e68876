"""`system-packages` on what the suite's real `builder all` of the shipped matrix published: every
format for debian11-py27 and debian12, and the Ansible playbook applied with the real
`ansible-playbook`, over ssh, to a bare server made from the platform's base image (debootstrap
bullseye or bookworm + sshd + the platform's Python, as any server of the platform has it). The
server then has the run-time packages at the runtime image's versions, and the demo application,
whose deploy failed there before (psycopg2 cannot load without libpq5), deploys.

The server reaches Debian's mirror (the default bridge's NAT), as the images' builds do; builder
and ansible reach it only through its ssh port published on 127.0.0.1.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from builder.machines.ssh import Destination

from .conftest import REPO, builder, project
from .sshd import _wait_for_sshd, keypair

LABEL = "io.builder-syspkgs.test"
APP = REPO / "examples" / "deploy" / "app"
# The platform's base, and its Python (what its runtime image's Dockerfile installs besides the
# matrix's packages). Ansible 2.19 needs Python 3.8+ on the server: python3 is there for it.
PLATFORMS = {
    "debian11-py27": ("builder/base:bullseye", "python2.7", "/usr/bin/python2.7", "egg"),
    "debian12": ("builder/base:bookworm", "python3", "/usr/bin/python3", "wheel"),
    # Its Python is builder's own package (python27-local, from eggs/debian12-py27/os/), which
    # the rendering installs: the bare server has no Python 2.7 at all.
    "debian12-py27": ("builder/base:bookworm", "python3", "/usr/local/bin/python2.7", "egg"),
}
WANTED = ["libpq5", "libyaml-0-2"]  # psycopg2's and PyYAML's, in the shipped matrix
INTERPRETER = "python27-local"


def interpreter_of(root: Path, platform: str) -> dict | None:
    """system-packages' interpreter entry of the platform, None when its Python is not builder's."""
    done = builder(root / "matrix.yaml", "system-packages", "--platform", platform, "--format", "json", timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout).get("interpreter")


def to_install(root: Path, platform: str) -> list[str]:
    """What the package manager installs: the artifacts' packages and the interpreter's Depends."""
    built = interpreter_of(root, platform)
    return sorted({*WANTED, *(built["depends"] if built else ())})

BARE = """\
ARG BASE
FROM ${BASE}
ARG PYTHON
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \\
        openssh-server python3 ${PYTHON} >/dev/null && rm -rf /var/lib/apt/lists/* && mkdir -p /run/sshd \\
    && useradd -m -s /bin/sh deploy && mkdir -p /srv/demo && chown deploy /srv/demo
"""


# Puppet from Debian (7.23 on bookworm, 5.5 on bullseye): no puppet on this machine, and none needed.
PUPPET = """\
ARG BASE
FROM ${BASE}
ARG PYTHON
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \\
        puppet >/dev/null && rm -rf /var/lib/apt/lists/*
"""


def made_image(kind: str, dockerfile: str, base: str, python: str) -> str:
    """`dockerfile` on the base image, made once per base and reused."""
    base_id = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", base], capture_output=True, text=True,
                             check=True).stdout.strip()
    tag = f"builder-test/{kind}:{base_id.split(':')[-1][:12]}-{python}"
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False).returncode != 0:
        with tempfile.TemporaryDirectory() as context:
            Path(context, "Dockerfile").write_text(dockerfile)
            subprocess.run(["docker", "build", "-q", "--build-arg", f"BASE={base}", "--build-arg", f"PYTHON={python}",
                            "-t", tag, context], capture_output=True, text=True, check=True, timeout=900)
    return tag


@contextmanager
def server(image: str, key: Path) -> Iterator[tuple[str, int]]:
    """A running bare server reachable as root (for the package manager) and as deploy."""
    name = f"builder-syspkgs-test-{uuid.uuid4().hex[:8]}"
    script = (
        "for home in /root /home/deploy; do mkdir -p $home/.ssh && printf '%s' \"$KEY\" > $home/.ssh/authorized_keys "
        "&& chmod 700 $home/.ssh && chmod 600 $home/.ssh/authorized_keys; done && chown -R deploy /home/deploy/.ssh && "
        "ssh-keygen -A >/dev/null && exec /usr/sbin/sshd -D -e"
    )
    subprocess.run(
        # builder runs remove labelled containers whose io.builder.pid is dead: this one is ours.
        ["docker", "run", "-d", "--init", "--name", name, "--label", LABEL, "--label", f"io.builder.pid={os.getpid()}",
         "-e", f"KEY={key.with_suffix('.pub').read_text()}", "-p", "127.0.0.1::22", image, "sh", "-c", script],
        capture_output=True, text=True, check=True,
    )
    try:
        out = subprocess.run(["docker", "port", name, "22/tcp"], capture_output=True, text=True, check=True).stdout
        port = int(out.split()[0].rsplit(":", 1)[1])
        _wait_for_sshd(Destination("127.0.0.1", user="root", port=port, identity=key))
        yield name, port
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def installed(argv_prefix: list[str], names: list[str]) -> dict[str, str]:
    """name -> version of those of `names` that dpkg says are installed."""
    fmt = "${Package} ${Version} ${db:Status-Status}\\n"
    done = subprocess.run([*argv_prefix, "sh", "-c", f"dpkg-query -W -f '{fmt}' {' '.join(names)} 2>/dev/null; true"],
                          capture_output=True, text=True, check=True, timeout=120)
    rows = [line.split() for line in done.stdout.splitlines()]
    return {row[0]: row[1] for row in rows if len(row) == 3 and row[2] == "installed"}


def runtime_image(root: Path, platform: str) -> str:
    manifest = json.loads((root / "eggs" / platform / "manifest.json").read_text())
    return next(iter(manifest["artifacts"].values()))["runtime_image"]


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_every_format_from_what_was_published(shipped: tuple[Path, str], platform: str) -> None:
    root, _ = shipped
    matrix = root / "matrix.yaml"
    out = {}
    for fmt in ("puppet", "ansible", "salt", "shell", "json"):
        done = builder(matrix, "system-packages", "--platform", platform, "--format", fmt, timeout=120)
        assert done.returncode == 0 and done.stderr == "", done.stdout + done.stderr
        out[fmt] = done.stdout
    data = json.loads(out["json"])
    assert data["packages"] == WANTED and data["family"] == "debian" and data["unknown"] == {}
    assert {u["package"] for u in data["needed_by"]["libpq5"]} == {"psycopg2"}
    # Every published artifact is accounted for, needing something or not.
    manifest = json.loads((root / "eggs" / platform / "manifest.json").read_text())
    assert sorted(data["artifacts"]) == sorted(manifest["artifacts"])
    names = to_install(root, platform)
    assert yaml.safe_load(out["ansible"])[0]["vars"]["builder_system_packages"] == names
    assert yaml.safe_load(out["salt"])[f"builder-system-packages-{platform}"]["pkg.installed"][0] == {"pkgs": names}
    assert "apt-get install -y --no-install-recommends " + " ".join(names) in out["shell"].splitlines()
    assert "package { [" + ", ".join(f"'{n}'" for n in names) + "]:" in out["puppet"]
    built = data.pop("interpreter", None)
    assert data == json.loads((root / "eggs" / platform / "system-packages.json").read_text())
    if platform != "debian12-py27":
        assert built is None
        return
    # The interpreter package comes first, verified by the sha256 os/manifest.json lists.
    listed = json.loads((root / "eggs" / platform / "os" / "manifest.json").read_text())["packages"]
    deb = Path(built["file"]).name
    assert built["package"] == INTERPRETER and built["version"] == "2.7.18-1" and listed[deb]["runtime"]
    assert built["sha256"] == listed[deb]["sha256"] and "libc6" in built["depends"]
    assert out["shell"].splitlines()[-1] == f"dpkg -i {root.resolve() / 'eggs' / platform / 'os' / deb}"


def _deploy_target(platform: str, port: int, key: Path, app: Path) -> str:
    _, _, python, fmt = PLATFORMS[platform]
    service = "sh {root}/current/app/service.sh"
    return f"""
deploy:
  - name: bare
    platform: {platform}
    format: {fmt}
    python: {python}
    hosts: ["deploy@127.0.0.1:{port}"]
    ssh: {{identity: {key}, options: {{StrictHostKeyChecking: "no", UserKnownHostsFile: /dev/null}}}}
    root: /srv/demo
    app: {app}
    requirements: [PyYAML, simplejson, MarkupSafe, python-dateutil, psycopg2]
    hooks:
      stop: {{remote: "{service} stop {{root}} 2>/dev/null || true"}}
      start: {{remote: "{service} start {{root}}"}}
      smoke: {{remote: "{service} smoke {{root}}"}}
"""


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_the_ansible_output_makes_a_bare_server_the_runtime_image(shipped: tuple[Path, str], tmp_path: Path,
                                                                  platform: str) -> None:
    playbook = shutil.which("ansible-playbook")
    assert playbook, "ansible-core is in the test extra of pyproject.toml"
    root, _ = shipped
    base, python, _, _ = PLATFORMS[platform]
    printed = builder(root / "matrix.yaml", "system-packages", "--platform", platform, "--format", "ansible", timeout=120)
    assert printed.returncode == 0, printed.stderr
    (tmp_path / "packages.yml").write_text(printed.stdout)
    key = keypair(tmp_path)
    image = runtime_image(root, platform)
    in_image = installed(["docker", "run", "--rm", "--network", "none", image], WANTED)
    assert sorted(in_image) == WANTED, in_image
    app = tmp_path / "app"
    shutil.copytree(APP, app)
    deploy_matrix = project(tmp_path / "project", (REPO / "matrix.yaml").read_text().replace(
        "\n  output: eggs", f"\n  output: {root / 'eggs'}", 1))

    with server(made_image("bare-server", BARE, base, python), key) as (name, port):
        on_server = ["docker", "exec", name]
        assert installed(on_server, WANTED) == {}, "the bare server must not have them yet"
        deploy_matrix.write_text(deploy_matrix.read_text() + _deploy_target(platform, port, key, app))
        # Without them psycopg2 cannot load there: the doctor refuses the server before anything is copied.
        before = builder(deploy_matrix, "deploy", "bare", "--release", "r1", timeout=900)
        assert before.returncode == 12, before.stdout + before.stderr
        said = before.stdout + before.stderr
        if platform == "debian12-py27":  # not even the interpreter is there yet
            assert "(step doctor): there is no Python at /usr/local/bin/python2.7 on" in said, said
        else:
            assert "(step doctor): libpq5 is not installed on" in said and "it provides libpq.so.5 for psycopg2" in said, said
            assert "the Puppet class from `python -m builder system-packages" in said, said
        assert subprocess.run([*on_server, "ls", "-A", "/srv/demo"], capture_output=True, text=True,
                              check=True).stdout == ""
        print(f"{platform}: before provisioning, deploy said: {before.stderr.strip().splitlines()[:3]}")

        inventory = tmp_path / "inventory.ini"
        inventory.write_text(
            f"bare ansible_host=127.0.0.1 ansible_port={port} ansible_user=root ansible_ssh_private_key_file={key} "
            "ansible_python_interpreter=/usr/bin/python3 "
            "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'\n"
        )
        env = {**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible"), "ANSIBLE_REMOTE_TEMP": "/tmp/.ansible"}
        argv = [playbook, "-i", str(inventory), str(tmp_path / "packages.yml")]
        started = time.monotonic()
        applied = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900, check=False)
        took = time.monotonic() - started
        assert applied.returncode == 0, applied.stdout + applied.stderr
        print(f"{platform}: ansible-playbook took {took:.1f} s")
        # What the runtime image has, at the same versions.
        assert installed(on_server, WANTED) == in_image
        if platform == "debian12-py27":  # and the very interpreter it was made from
            assert installed(on_server, [INTERPRETER]) == installed(["docker", "run", "--rm", "--network", "none", image],
                                                                    [INTERPRETER]) == {INTERPRETER: "2.7.18-1"}
        again = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900, check=False)
        assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout + again.stderr

        # The runtime image plus the application: the demo app now deploys and answers.
        after = builder(deploy_matrix, "deploy", "bare", "--release", "r1", timeout=900)
        assert after.returncode == 0, after.stdout + after.stderr
        assert subprocess.run([*on_server, "readlink", "/srv/demo/current"], capture_output=True, text=True,
                              check=True).stdout.strip() == "releases/r1"
        facts = subprocess.run([*on_server, "sh", "-c", "cat /srv/demo/releases/r1/release.json"], capture_output=True,
                               text=True, check=True).stdout
        assert json.loads(facts)["imports_checked"]["checked"], facts
        probe = "import json,urllib.request as u; print(u.urlopen('http://127.0.0.1:8000/').read().decode())"
        answer = subprocess.run([*on_server, "python3", "-c", probe], capture_output=True, text=True, check=False)
        assert answer.returncode == 0 and json.loads(answer.stdout)["libyaml"], answer.stdout + answer.stderr


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_the_puppet_class_is_valid_and_installs_what_the_runtime_image_has(shipped: tuple[Path, str], tmp_path: Path,
                                                                          platform: str) -> None:
    root, _ = shipped
    base, _, _, _ = PLATFORMS[platform]
    printed = builder(root / "matrix.yaml", "system-packages", "--platform", platform, "--format", "puppet", timeout=120)
    assert printed.returncode == 0, printed.stderr
    klass = "builder_system_packages_" + platform.replace("-", "_")
    (tmp_path / "site.pp").write_text(printed.stdout + f"include {klass}\n")
    wanted = WANTED + ([INTERPRETER] if platform == "debian12-py27" else [])
    in_image = installed(["docker", "run", "--rm", "--network", "none", runtime_image(root, platform)], wanted)
    image = made_image("puppet", PUPPET, base, "none")
    run = ["docker", "run", "--rm", "-v", f"{tmp_path / 'site.pp'}:/site.pp:ro"]
    if platform == "debian12-py27":  # the class copies the interpreter's file from where it was published
        published = (root / "eggs" / platform / "os").resolve()
        run += ["-v", f"{published}:{published}:ro"]
    run.append(image)
    valid = subprocess.run([*run, "puppet", "parser", "validate", "/site.pp"], capture_output=True, text=True,
                           timeout=300, check=False)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    # Puppet's own ruby needs libyaml-0-2, so libpq5 alone shows the class installing: absent before.
    script = ("dpkg-query -W libpq5 >/dev/null 2>&1 && exit 9; apt-get update -qq && "
              "puppet apply --detailed-exitcodes /site.pp; code=$?; "
              "dpkg-query -W -f '${Package} ${Version} ${db:Status-Status}\\n' " + " ".join(wanted) + "; exit $code")
    applied = subprocess.run([*run, "sh", "-c", script], capture_output=True, text=True, timeout=900, check=False)
    assert applied.returncode == 2, applied.stdout + applied.stderr  # 2: changes were applied, no failure
    assert "Package[libpq5]/ensure: created" in applied.stdout, applied.stdout
    if platform == "debian12-py27":
        assert f"Package[{INTERPRETER}]/ensure: created" in applied.stdout, applied.stdout
    rows = [line.split() for line in applied.stdout.splitlines() if line.endswith(" installed")]
    assert {row[0]: row[1] for row in rows} == in_image

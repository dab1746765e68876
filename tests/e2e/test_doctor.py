"""doctor, the first step of every deploy, and stale releases, against real servers over ssh
(containers of the platforms' runtime images with sshd, reached only through 127.0.0.1, on a
bridge with no way out), compared with the fingerprint.json the suite's real `builder all`
published for debian11-py27:

- `missing`: libpq5 purged with dpkg (psycopg2 needs its libpq.so.5);
- `narrow`: its Python says it is narrow-unicode. Only the interpreter's answer is faked: a
  sitecustomize.py sets sys.maxunicode to 0xFFFF, so host.py (run by that Python, as on every
  server) reports cp27m where the platform's is cp27mu; the binary is the real, wide one;
- `bookworm`: a Debian 12 server (the debian12 runtime image) as a debian11-py27 host;
- `newer`: libpq5 at a newer version than the image's, really installed with dpkg (the image's
  own libpq5 files rebuilt with dpkg-deb at version +local1, as a newer point release would be).
  Later its /usr/bin/python2.7 is replaced by another binary (one byte appended: the same
  version and ABI, another sha256), which makes its releases stale.

The tests run in order on one pool, as a real pool's history accumulates.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import REPO, builder, project
from .sshd import isolated_network, keypair, sshd_image
from .test_deploy import APP, _runtime_image
from .test_deploy_faults import Server, _lines, _start, _target

# libpq5 again, from its own installed files, at a higher version: a real package dpkg installs.
NEWER = """set -e
v=$(dpkg-query -W -f '${Version}' libpq5)
mkdir -p /tmp/newer/DEBIAN
dpkg-query -L libpq5 | while read -r f; do if [ -f "$f" ] || [ -L "$f" ]; then cp -a --parents "$f" /tmp/newer; fi; done
dpkg-query -s libpq5 | grep -v -e '^Status:' -e '^Conffiles:' | sed "s/^Version: .*/Version: ${v}+local1/" > /tmp/newer/DEBIAN/control
dpkg-deb -b /tmp/newer /tmp/libpq5-newer.deb >/dev/null && dpkg -i /tmp/libpq5-newer.deb >/dev/null && rm -rf /tmp/newer*
dpkg-query -W -f '${Version}' libpq5
"""


@dataclass
class Pool:
    matrix: Path
    image: dict  # the published fingerprint.json of debian11-py27
    missing: Server
    narrow: Server
    bookworm: Server
    newer: Server

    def run(self, *args: str) -> tuple[int, str, str]:
        done = builder(self.matrix, *args, timeout=900)
        return done.returncode, done.stdout, done.stderr

    def release_json(self, server: Server, release: str) -> dict:
        return json.loads(server.sh(f"cat /srv/demo/releases/{release}/release.json") or "null")


@pytest.fixture(scope="module")
def pool(shipped: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    tmp = tmp_path_factory.mktemp("doctor")
    published, _ = shipped
    text = (REPO / "matrix.yaml").read_text()
    matrix = project(tmp / "project", text.replace("\n  output: eggs", f"\n  output: {published / 'eggs'}", 1))
    key = keypair(tmp)
    network = f"builder-doctor-test-{os.getpid()}"
    isolated_network(network)
    servers: list[Server] = []
    try:
        py27 = sshd_image(_runtime_image(published, "debian11-py27"))
        servers = [_start(py27, key, network, None) for _ in range(3)]
        servers.append(_start(sshd_image(_runtime_image(published, "debian12")), key, network, None))
        missing, narrow, newer, bookworm = servers
        assert missing.sh("dpkg --purge --force-depends libpq5 >/dev/null 2>&1; dpkg-query -W libpq5 || echo gone",
                          user="root").endswith("gone")
        narrow.sh("echo 'import sys; sys.maxunicode = 0xFFFF' >> /etc/python2.7/sitecustomize.py", user="root")
        assert newer.sh(NEWER, user="root").endswith("+local1")
        app = tmp / "app"
        shutil.copytree(APP, app)
        matrix.write_text(matrix.read_text() + "\ndeploy:"
                          + _target("fleet", [s.host for s in (newer, missing, narrow, bookworm)], key, app, batch="100%")
                          + "".join(_target(name, [s.host], key, app) for name, s in
                                    (("missing", missing), ("narrow", narrow), ("bookworm", bookworm), ("newer", newer))))
        image = json.loads((published / "eggs" / "debian11-py27" / "fingerprint.json").read_text())
        yield Pool(matrix, image, missing, narrow, bookworm, newer)
    finally:
        for server in servers:
            subprocess.run(["docker", "rm", "-f", server.name], capture_output=True, check=False)
        subprocess.run(["docker", "network", "rm", network], capture_output=True, check=False)


def test_the_published_fingerprint_is_the_runtime_images(pool: Pool, shipped: tuple[Path, str]) -> None:
    image = pool.image
    assert image["platform"] == "debian11-py27" and image["runtime_image"] == _runtime_image(shipped[0], "debian11-py27")
    assert (image["os"]["id"], image["os"]["release"], image["os"]["arch"]) == ("debian", "11", "x86_64")
    assert image["libc"] == {"name": "glibc", "version": "2.31"}
    assert image["python"]["path"] == "/usr/bin/python2.7" and image["python"]["abi"] == "cp27mu"
    assert image["packages"]["libpq5"]["sonames"] == ["libpq.so.5"]
    # What a server of the image answers is the same, field by field (the binary's hash too).
    said = pool.newer.sh("sha256sum /usr/bin/python2.7").split()[0]
    assert said == image["python"]["sha256"]


def test_doctor_names_each_host_and_refuses_the_ones_that_are_not_the_image(pool: Pool) -> None:
    code, out, err = pool.run("doctor", "fleet")
    print(out + err)  # the README quotes this run
    assert code == 12, out + err
    lines = _lines(out)
    version = pool.image["packages"]["libpq5"]["version"]
    assert (f"{pool.newer.host}: warning: libpq5 on {pool.newer.host} is {version}+local1, newer than the runtime "
            f"image's {version}") in lines, out
    assert f"{pool.newer.host}: ok (with warnings)" in lines, out
    assert (f"{pool.missing.host}: REFUSED: libpq5 is not installed on {pool.missing.host}: it provides libpq.so.5 for "
            "psycopg2; install it, e.g. with the Puppet class from `python -m builder system-packages --platform "
            "debian11-py27 --format puppet` (or ansible, salt, shell)") in lines, out
    assert (f"{pool.narrow.host}: REFUSED: the Python at /usr/bin/python2.7 on {pool.narrow.host} has ABI cp27m "
            "(narrow unicode), debian11-py27's has cp27mu (wide unicode)") in out, out
    refused = [line for line in lines if line.startswith(f"{pool.bookworm.host}: REFUSED: ")]
    assert any("runs Debian GNU/Linux 12 (bookworm) (debian 12), not debian 11" in line for line in refused), out
    assert any("there is no Python at /usr/bin/python2.7" in line for line in refused), out
    assert "3 of 4 host(s) refused" in err, err


@pytest.mark.parametrize("name", ["missing", "narrow", "bookworm"])
def test_deploy_refuses_them_before_anything_is_copied(pool: Pool, name: str) -> None:
    server: Server = getattr(pool, name)
    code, out, err = pool.run("deploy", name, "--release", "v1")
    assert code == 12, out + err
    failed = next(line for line in _lines(err) if line.startswith("failed: "))
    assert failed.startswith(f"failed: {server.host} (step doctor): "), failed
    assert {"missing": "libpq5 is not installed on", "narrow": "has ABI cp27m (narrow unicode)",
            "bookworm": "runs Debian GNU/Linux 12 (bookworm)"}[name] in failed, failed
    assert server.sh("ls -A /srv/demo") == ""  # nothing copied, nothing made


def test_a_host_with_a_newer_package_deploys_with_a_warning_kept_in_release_json(pool: Pool) -> None:
    code, out, err = pool.run("deploy", "newer", "--release", "v1")
    assert code == 0, out + err
    assert f"[{pool.newer.host}] warning: libpq5 on {pool.newer.host} is " in out, out
    made = pool.release_json(pool.newer, "v1")
    assert made["doctor"]["checked"] is True and "newer than the runtime image's" in made["doctor"]["warnings"][0]
    assert made["interpreter"]["sha256"] == pool.image["python"]["sha256"] and made["interpreter"]["abi"] == "cp27mu"


def test_skip_doctor_deploys_anyway_and_release_json_says_so(pool: Pool) -> None:
    code, out, err = pool.run("deploy", "narrow", "--release", "v1", "--skip-doctor")
    assert code == 0, out + err  # the real interpreter is the wide one: the release works
    assert "--skip-doctor: the hosts are not compared" in out
    assert pool.release_json(pool.narrow, "v1")["doctor"] == {"checked": False, "skipped": "--skip-doctor"}


def test_a_replaced_interpreter_makes_its_releases_stale(pool: Pool) -> None:
    server = pool.newer
    code, out, err = pool.run("deploy", "newer", "--release", "v2")
    assert code == 0, out + err
    server.sh("cp -p /usr/bin/python2.7 /tmp/python2.7 && printf '\\n' >> /tmp/python2.7 && "
              "mv /tmp/python2.7 /usr/bin/python2.7", user="root")

    code, out, err = pool.run("releases", "newer")
    assert code == 0, out + err
    line = next(line for line in _lines(out) if line.startswith(f"{server.host}: current v2"))
    assert "v1 (previous, stale: made with /usr/bin/python2.7 2.7.18; the interpreter there has changed (binary sha256" in line
    assert "v2 (current, stale: " in line, line

    code, out, err = pool.run("rollback", "newer", "--to", "v1")
    assert code == 10, out + err
    assert "release v1 is stale: made with /usr/bin/python2.7" in err and "rollback does not switch to it" in err, err
    assert server.sh("readlink /srv/demo/current") == "releases/v2"
    code, out, err = pool.run("deploy", "newer", "--release", "v2")
    assert code == 10 and "release v2 is current there but stale" in err, out + err

    # Another binary of the same version and ABI: the doctor warns, and re-deploying v1 makes it afresh.
    code, out, err = pool.run("deploy", "newer", "--release", "v1", "--allow-downgrade")
    assert code == 0, out + err
    assert "warning: the Python at /usr/bin/python2.7 on" in out and "is another binary than the runtime image's" in out
    assert "release v1 is stale (" in out and "making it afresh" in out, out
    assert server.sh("readlink /srv/demo/current") == "releases/v1"
    code, out, err = pool.run("releases", "newer")
    line = next(line for line in _lines(out) if line.startswith(f"{server.host}: current v1"))
    assert "v1 (current)" in line and "v2 (previous, stale: " in line, line

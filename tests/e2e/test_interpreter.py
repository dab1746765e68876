"""debian12-py27: Python 2.7.18 built by builder into the OS package python27-local, from the
suite's one real `builder all` of the shipped matrix (conftest's `shipped`). The package is
published to eggs/debian12-py27/os/, the images were made from it, a bare Debian 12 server installs
it with dpkg -i and the demo application deploys there from the published eggs. The rpm path: the
same spec generator, built into a real rpm by Debian's rpmbuild and read back with rpm -qp."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from builder.machines import ospackage
from builder.matrix.load import load

from .conftest import REPO, builder, docker_run, project
from .sshd import keypair, sshd_image
from .test_deploy import APP, LABEL, _start, _target

PLATFORM = "debian12-py27"
RUNTIME_DEB = "python27-local_2.7.18-1_amd64.deb"
DEV_DEB = "python27-local-dev_2.7.18-1_amd64.deb"


def _os(root: Path) -> Path:
    return root / "eggs" / PLATFORM / "os"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _runtime_image(root: Path) -> str:
    manifest = json.loads((root / "eggs" / PLATFORM / "manifest.json").read_text())
    return next(iter(manifest["artifacts"].values()))["runtime_image"]


def _control(deb: Path, field: str) -> str:
    with tempfile.TemporaryDirectory() as scratch:
        shutil.copyfile(deb, Path(scratch) / deb.name)
        done = subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", f"{scratch}:/p:ro", "builder/base:bookworm",
                               "dpkg-deb", "-f", f"/p/{deb.name}", field], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_the_package_is_built_once_and_published_with_its_hashes(shipped: tuple[Path, str]) -> None:
    root, out = shipped
    folder = _os(root)
    assert sorted(p.name for p in folder.iterdir()) == sorted([DEV_DEB, RUNTIME_DEB, "manifest.json"])
    listed = json.loads((folder / "manifest.json").read_text())["packages"]
    for name in (RUNTIME_DEB, DEV_DEB):
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == listed[name]["sha256"]
        assert listed[name]["sources"]["OpenSSL"]["version"] == "1.1.1w"
    assert listed[RUNTIME_DEB]["runtime"] is True and listed[DEV_DEB]["runtime"] is False
    # Built at most once in the run (none when the cache held it), published once.
    assert out.count("building the interpreter package python27-local") <= 1
    assert out.count(f"published {PLATFORM}/os/{RUNTIME_DEB}") == 1
    for package in ("simplejson", "pyyaml", "markupsafe", "six", "python-dateutil", "psycopg2"):
        assert f"[{PLATFORM}/{package}] publish: passed" in out
    # Its Depends are the libraries it links, by their Debian packages; the private OpenSSL is its own.
    depends = _control(folder / RUNTIME_DEB, "Depends")
    for needed in ("libc6", "zlib1g", "libbz2-1.0", "libsqlite3-0", "libreadline8", "libncursesw6"):
        assert needed + " (>=" in depends, depends
    assert "libssl" not in depends
    assert builder(root / "matrix.yaml", "verify").returncode == 0


def test_its_test_proved_ssl_and_every_library_in_the_bare_base(shipped: tuple[Path, str]) -> None:
    root, _ = shipped
    matrix = load(root / "matrix.yaml")
    platform = matrix.platform(PLATFORM)
    abouts = [json.loads(p.read_text()) for p in (REPO / ".builder" / "cache" / "interpreter").glob("*/interpreter.json")]
    published = json.loads((_os(root) / "manifest.json").read_text())["packages"][RUNTIME_DEB]
    about = next(a for a in abouts if a["key"] == published["key"])
    result = about["test"]
    assert result["reasons"] == []
    assert "OpenSSL 1.1.1w" in result["openssl"] and result["tls"]["answer"] == "HELLO"
    assert result["maxunicode"] == 0x10FFFF  # --enable-unicode=ucs4
    assert set(result["modules"]) == set(platform.interpreter.modules)
    assert result["elf_files"] > 40 and result["missing_libraries"] == {}
    assert about["build_seconds"] > 0


def test_the_runtime_image_has_the_package_and_no_compiler(shipped: tuple[Path, str]) -> None:
    root, _ = shipped
    script = (
        "dpkg-query -W -f '${Package} ${Version}\\n' python27-local; "
        "dpkg-query -W python27-local-dev >/dev/null 2>&1 && echo HEADERS; command -v gcc cc || echo no-compiler; "
        "/usr/local/bin/python2.7 -c 'import ssl, sqlite3, bz2, zlib, ctypes, readline; print(ssl.OPENSSL_VERSION)'; "
        "test -e /usr/local/bin/python && echo UNVERSIONED; "
        "for so in /usr/local/lib/python2.7/lib-dynload/*.so /usr/local/lib/lib*.so.*; do ldd $so; done | grep -c 'not found'"
    )
    done = docker_run(_runtime_image(root), script)
    lines = done.stdout.split("\n")
    assert lines[0] == "python27-local 2.7.18-1", done.stdout + done.stderr
    assert "HEADERS" not in done.stdout and "UNVERSIONED" not in done.stdout
    assert "no-compiler" in lines and "OpenSSL 1.1.1w  11 Sep 2023" in lines
    assert lines[-2:] == ["0", ""] or lines[-1] == "0", done.stdout


def test_a_warm_run_builds_neither_the_package_nor_an_image(shipped: tuple[Path, str]) -> None:
    root, _ = shipped
    before = (_os(root) / "manifest.json").read_bytes()
    # The whole matrix, as the shipped-matrix tests expect the shared project's reports to be.
    warm = builder(root / "matrix.yaml", "all")
    assert warm.returncode == 0, warm.stdout + warm.stderr
    assert "interpreter packages up to date" in warm.stdout
    assert "building image" not in warm.stdout and "building the interpreter package" not in warm.stdout
    assert f"published {PLATFORM}/os/" not in warm.stdout and "build: passed" not in warm.stdout
    assert warm.stdout.count(f"[{PLATFORM}/") == 6
    assert all(f"[{PLATFORM}/{p}] up to date" in warm.stdout for p in ("six", "pyyaml", "psycopg2"))
    assert (_os(root) / "manifest.json").read_bytes() == before


def test_a_clean_checkout_takes_the_package_the_engine_kept_instead_of_building(shipped: tuple[Path, str], tmp_path: Path) -> None:
    root, _ = shipped
    matrix = project(tmp_path / "clean", (REPO / "matrix.yaml").read_text())
    cache = tmp_path / "empty-cache"  # as on CI's clean clone: no .builder/cache at all
    shutil.copytree(REPO / ".builder" / "cache" / "sources", cache / "sources")
    done = builder(matrix, "images", "--platform", PLATFORM, env={"BUILDER_CACHE": str(cache)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "interpreter packages up to date" in done.stdout
    assert "building the interpreter package" not in done.stdout and "building image" not in done.stdout
    kept = {p.name: p.read_bytes() for p in next((cache / "interpreter").iterdir()).iterdir()}
    published = {name: (_os(root) / name).read_bytes() for name in (RUNTIME_DEB, DEV_DEB)}
    assert {name: kept[name] for name in published} == published  # the very bytes the images were made from
    assert json.loads(kept["interpreter.json"])["tested"] is True


@pytest.fixture(scope="module")
def bare_server(shipped: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, object]]:
    """A bare Debian 12 server (the base image, sshd, no compiler) provisioned by what
    `system-packages --format shell` printed: its packages, then the published .deb verified by
    its sha256 and installed with dpkg -i."""
    root, _ = shipped
    tmp = tmp_path_factory.mktemp("interpreter-server")
    deb = _os(root) / RUNTIME_DEB
    printed = builder(root / "matrix.yaml", "system-packages", "--platform", PLATFORM, "--packages-at", "/tmp")
    assert printed.returncode == 0, printed.stdout + printed.stderr
    script = printed.stdout
    # Its Depends, as the package itself says them, are installed before it (dpkg -i fetches nothing).
    depends = sorted(d.split()[0] for d in _control(deb, "Depends").split(", "))
    install = next(line for line in script.splitlines() if line.startswith("apt-get install"))
    assert set(depends) <= set(install.split()) and {"libpq5", "libyaml-0-2"} <= set(install.split()), install
    assert script.splitlines()[-2:] == [f"echo '{_sha(deb)}  /tmp/{RUNTIME_DEB}' | sha256sum -c -",
                                        f"dpkg -i /tmp/{RUNTIME_DEB}"], script
    context = tmp / "context"
    context.mkdir()
    shutil.copyfile(deb, context / deb.name)
    (context / "install.sh").write_text(script)
    (context / "Dockerfile").write_text(
        f"FROM {sshd_image('builder/base:bookworm')}\n"
        "ENV DEBIAN_FRONTEND=noninteractive\n"
        f"COPY {deb.name} install.sh /tmp/\n"
        f"RUN apt-get update -qq && sh -ex /tmp/install.sh && rm -rf /var/lib/apt/lists/* /tmp/install.sh\n"
    )
    tag = f"builder-test/py27-local-server:{hashlib.sha256((context / 'Dockerfile').read_bytes() + script.encode() + deb.read_bytes()).hexdigest()[:16]}"
    subprocess.run(["docker", "build", "-q", "-t", tag, str(context)], capture_output=True, text=True, check=True, timeout=900)
    key = keypair(tmp)
    network = f"builder-interp-test-{uuid.uuid4().hex[:6]}"
    subprocess.run(["docker", "network", "create", "--label", LABEL,
                    "-o", "com.docker.network.bridge.enable_ip_masquerade=false",
                    "-o", "com.docker.network.bridge.enable_icc=false", network], capture_output=True, check=True)
    server = None
    try:
        server = _start(tag, key, network, "py27-local")
        text = (REPO / "matrix.yaml").read_text().replace("\n  output: eggs", f"\n  output: {root / 'eggs'}", 1)
        matrix = project(tmp / "project", text)
        app = tmp / "app"
        shutil.copytree(APP, app)
        matrix.write_text(text + "\ndeploy:" + _target("demo", PLATFORM, [server], key, tmp / "balancer.log", app, "egg"))
        yield matrix, server
    finally:
        if server is not None:
            subprocess.run(["docker", "rm", "-f", server.name], capture_output=True, check=False)  # type: ignore[attr-defined]
        subprocess.run(["docker", "network", "rm", network], capture_output=True, check=False)


def test_dpkg_installed_it_on_a_bare_server_and_the_demo_app_deploys_there(bare_server) -> None:  # noqa: ANN001
    matrix, server = bare_server
    assert server.sh("dpkg-query -W -f '${Status}' python27-local") == "install ok installed"
    assert server.sh("command -v gcc cc || echo none") == "none"
    assert "OpenSSL 1.1.1w" in server.sh("/usr/local/bin/python2.7 -c 'import ssl; print(ssl.OPENSSL_VERSION)'")
    done = builder(matrix, "deploy", "demo", "--release", "v1", timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    answer = server.answer()
    assert answer is not None and answer["version"] == "v1", done.stdout
    assert answer["python"] == "2.7" and answer["libyaml"] and answer["simplejson_speedups"], answer


def test_a_server_whose_python_is_the_same_files_but_not_the_package_is_refused(shipped: tuple[Path, str],
                                                                              bare_server) -> None:  # noqa: ANN001
    """The same interpreter's files unpacked by hand (what copying /usr/local from another box
    does): version, ABI and binary match the runtime image's, but no package says where they came
    from, so the doctor refuses the server (exit 12) and says to install the published package."""
    matrix, server = bare_server
    subprocess.run(["docker", "cp", str(_os(shipped[0]) / RUNTIME_DEB), f"{server.name}:/root/"], check=True)
    server.sh(f"dpkg --remove --force-depends python27-local >/dev/null 2>&1; dpkg-deb -x /root/{RUNTIME_DEB} /")
    assert server.sh("dpkg-query -W -f '${Status}' python27-local 2>/dev/null || echo absent").endswith("absent")
    assert server.sh("/usr/local/bin/python2.7 -c 'import sys; print(sys.maxunicode)'") == "1114111"
    done = builder(matrix, "doctor", "demo", timeout=300)
    said = done.stdout + done.stderr
    assert done.returncode == 12, said
    assert "python27-local is not installed on" in said and "is another build; install os/" + RUNTIME_DEB in said, said


# -- the rpm path ------------------------------------------------------------------------------

RPM_IMAGE = """\
FROM builder/base:bookworm
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rpm >/dev/null \\
 && rm -rf /var/lib/apt/lists/*
"""


def test_the_generated_spec_builds_an_rpm_that_provides_python_abi(tmp_path: Path) -> None:
    """The spec the redhat family gets, from the same code, built by rpmbuild around a tiny
    payload staged as the guest stages the interpreter, then read back with rpm -qp."""
    tag = "builder-test/rpmbuild:" + hashlib.sha256(RPM_IMAGE.encode()).hexdigest()[:16]
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False).returncode != 0:
        (tmp_path / "image").mkdir()
        (tmp_path / "image" / "Dockerfile").write_text(RPM_IMAGE)
        subprocess.run(["docker", "build", "-q", "-t", tag, str(tmp_path / "image")], capture_output=True, check=True, timeout=900)
    interpreter = load(REPO / "matrix.yaml").platform(PLATFORM).interpreter
    assert interpreter is not None
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "package.spec").write_text(ospackage.rpm_spec(replace(interpreter, release="7")))
    stage = (
        "set -e; S=/tmp/stage; D=/tmp/dev; mkdir -p $S/usr/local/bin $S/usr/local/lib/python2.7 $D/usr/local/include/python2.7; "
        "printf '#!/bin/sh\\necho 2.7.18\\n' > $S/usr/local/bin/python2.7; chmod 755 $S/usr/local/bin/python2.7; "
        "echo x > $S/usr/local/lib/python2.7/os.py; echo '#define X 1' > $D/usr/local/include/python2.7/pyconfig.h; "
        "printf '/usr/local/bin/python2.7\\n/usr/local/lib/python2.7/os.py\\n%%dir /usr/local/lib/python2.7\\n' > /tmp/files; "
        "printf '/usr/local/include/python2.7/pyconfig.h\\n%%dir /usr/local/include/python2.7\\n' > /tmp/files-devel; "
        "rpmbuild -bb /meta/package.spec --define '_topdir /tmp/rpm' --define 'stage '$S --define 'devstage '$D "
        "--define 'filelist /tmp/files' --define 'devfilelist /tmp/files-devel' >/tmp/log 2>&1 || { tail -30 /tmp/log; exit 1; }; "
        "for r in /tmp/rpm/RPMS/*/*.rpm; do echo \"== $(basename $r)\"; rpm -qp --provides $r; echo '-- files'; rpm -qpl $r; "
        "echo '-- requires'; rpm -qp --requires $r; done"
    )
    done = subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", f"{meta}:/meta:ro", tag, "sh", "-c", stage],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    parts = {block.split("\n", 1)[0].strip(): block for block in done.stdout.split("== ")[1:]}
    runtime = parts["python27-local-2.7.18-7.x86_64.rpm"]
    provides, rest = runtime.split("-- files")
    files, requires = rest.split("-- requires")
    assert "python(abi) = 2.7" in provides.splitlines() and "python-abi = 2.7" in provides.splitlines()
    # AutoProv is off: only the explicit Provides and the package's own name.
    assert sorted(provides.splitlines()[1:]) == ["python(abi) = 2.7", "python-abi = 2.7", "python27-local = 2.7.18-7",
                                                 "python27-local(x86-64) = 2.7.18-7"]
    assert all(line.startswith("/usr/local/") for line in files.split() if line), files
    assert "/usr/local/include/python2.7/pyconfig.h" not in files
    assert "/bin/sh" in requires  # AutoReq is on: the interpreter (here a script) needs its shell
    devel = parts["python27-local-devel-2.7.18-7.x86_64.rpm"]
    assert "/usr/local/include/python2.7/pyconfig.h" in devel
    assert os.path.basename(ospackage.GUEST_SCRIPT) == "interpreter.sh"

"""Small sdists made on the spot, a matrix around them, and a way to watch a running builder.

Every matrix here uses the same debian12 platform as test_isolation.py (no system packages), so
the suite makes its images once and these tests only start containers.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import docker
import pytest

from builder.machines.engine import listed

from .conftest import FIXTURES, REPO

LABEL = "io.builder"
PLATFORM = """
platforms:
  - name: debian12
    family: debian
    base: {debootstrap: bookworm}
    python: /usr/bin/python3
    limits: {timeout: 120, pids: 256, memory: 512m}
packages:
"""
VIRTUALENV = "9180ce4102c388073bac71ecd041f7f31f9ef8c528edb205d75ae6144d08106e"  # 16.7.12, as shipped
# Debian 11's Python 2.7 as the shipped matrix declares it (no limits: the defaults).
PY27_PLATFORM = f"""
platforms:
  - name: debian11-py27
    family: debian
    base: {{debootstrap: bullseye}}
    python: /usr/bin/python2.7
    tools: [{{name: virtualenv, version: 16.7.12, sha256: {VIRTUALENV}}}]
packages:
"""
PIP = "2cd581cf58ab7fcfca4ce8efa6dcacd0de5bf8d0a3eb9ec927e07405f4d9e2a2"  # 24.2, as shipped
# Debian 12 as the shipped matrix declares it: wheels are tested with pip run from its own wheel.
PY3_PLATFORM = f"""
platforms:
  - name: debian12
    family: debian
    base: {{debootstrap: bookworm}}
    python: /usr/bin/python3
    tools: [{{name: pip, version: "24.2", sha256: {PIP}}}]
packages:
"""
CALM = {"setup.py": "from setuptools import setup\nsetup(name='calm', version='1.0', py_modules=['calm'])\n",
        "calm.py": "X = 1\n"}


PLANTED = b"planted\n"


def sdist(
    folder: Path, name: str, files: Mapping[str, str | bytes], crafted: Sequence[tarfile.TarInfo] = ()
) -> tuple[Path, str]:
    """NAME-1.0.tar.gz with `files` under NAME-1.0/, then the `crafted` members as they are
    (see member()), and its sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}-1.0.tar.gz"
    with tarfile.open(target, "w:gz") as tar:
        for rel, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(f"{name}-1.0/{rel}")
            info.size = len(data)
            info.mtime = int(time.time())  # zip (the egg) cannot hold 1970
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
        for info in crafted:
            tar.addfile(info, io.BytesIO(PLANTED) if info.size else None)
    return target, digest(target)


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    """A hand-made member: a file holding PLANTED, or a link, under exactly `name`."""
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mtime = kind, link, int(time.time())
    info.size = len(PLANTED) if kind == tarfile.REGTYPE else 0
    return info


def fixture_sdist(folder: Path, name: str) -> tuple[Path, str]:
    """An sdist of tests/fixtures/NAME/."""
    files = {p.name: p.read_text() for p in sorted((FIXTURES / name).iterdir()) if p.is_file()}
    return sdist(folder, name, files)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def entry(name: str, path: Path, sha256: str, extra: str = "") -> str:
    return f"""
  - name: {name}
    version: "1.0"
    sha256: {sha256}
    path: {path}
    formats: [egg]
    extensions: []
{extra}"""


def matrix_text(*entries: str) -> str:
    return PLATFORM + "".join(entries)


_started: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def no_strays() -> Iterator[None]:
    """A failing test must not leave builders running behind it (import this into the module)."""
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)


def start(matrix: Path, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """`python -m builder ARGS` in the background, as a user would start it."""
    full = {**os.environ, "BUILDER_CACHE": str(REPO / ".builder" / "cache"), "COLUMNS": "200", **(env or {})}
    argv = [sys.executable, "-m", "builder", *args, "--matrix", str(matrix)]
    proc = subprocess.Popen(argv, cwd=matrix.parent, env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    _started.append(proc)
    return proc


def containers(pid: int, label: str = f"{LABEL}.pid") -> list:
    """The containers builder process `pid` started (`label` names the pid label)."""
    return listed(docker.from_env(), label=f"{label}={pid}")


def wait_until(proc: subprocess.Popen[str], what: str, ready: Callable[[], bool], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"builder ended before {what}: {proc.stdout.read() if proc.stdout else ''}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def guest_running(proc: subprocess.Popen[str], role: str, log: Path, line: str) -> None:
    """Wait until `proc` has a container of `role` (build or runtime image) and `log` shows `line`:
    then the guest is surely in the middle of its work."""

    def ready() -> bool:
        for container in containers(proc.pid):
            try:
                tags = container.image.tags
            except docker.errors.NotFound:
                continue
            if any(f":{role}-" in tag for tag in tags) and log.is_file() and line in log.read_text():
                return True
        return False

    wait_until(proc, f"a {role} guest printing {line!r}", ready)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under folder with its bytes (the lock file aside: it says who holds it)."""
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def bomb(folder: Path, name: str, size: int) -> tuple[Path, str]:
    """A complete, valid NAME-1.0.tar.gz of about 1 MB holding a `size`-byte file of zeros.

    Written as a multi-member gzip file (which gzip and tarfile read as one stream), compressing
    one 1 MiB block of zeros once and repeating it: made in a moment instead of deflating the
    whole size."""
    folder.mkdir(parents=True, exist_ok=True)
    block = 1 << 20
    assert size % block == 0
    setup = b"from setuptools import setup\nsetup(name='%s', version='1.0')\n" % name.encode()
    head = tarfile.TarInfo(f"{name}-1.0/setup.py")
    head.size, head.mtime = len(setup), int(time.time())
    zeros = tarfile.TarInfo(f"{name}-1.0/zeros.bin")
    zeros.size, zeros.mtime = size, int(time.time())
    prefix = head.tobuf() + setup + bytes(-len(setup) % 512) + zeros.tobuf()
    one = gzip.compress(bytes(block), compresslevel=9)
    target = folder / f"{name}-1.0.tar.gz"
    with open(target, "wb") as out:
        out.write(gzip.compress(prefix))
        for _ in range(size // block):
            out.write(one)
        out.write(gzip.compress(bytes(1024)))  # the two empty blocks that end a tar archive
    return target, digest(target)

"""What a package's setup.py can and cannot do in a build guest, proven with hostile sdists."""
from __future__ import annotations

import json
from pathlib import Path

from .conftest import builder, project
from .sdists import entry, member, sdist

PROBE = r'''
import errno, os, socket, subprocess, sys
from setuptools import setup
print("isolation: uid %d" % os.getuid())
print("isolation: interfaces %s" % sorted(os.listdir("/sys/class/net")))
try:
    # TEST-NET-1 (RFC 5737): with no interface but loopback the kernel refuses at once.
    socket.create_connection(("192.0.2.1", 80), timeout=3)
    print("isolation: CONNECTED")
except OSError as exc:
    print("isolation: connect refused: %s" % errno.errorcode.get(exc.errno, exc.errno))
for path in ("/builder/in/probe-1.0.tar.gz", "/builder/guest/build.py", "/usr/lib/evil"):
    try:
        open(path, "a").close()
        print("isolation: WROTE %s" % path)
    except (IOError, OSError) as exc:
        print("isolation: cannot write %s: %s" % (path, errno.errorcode.get(exc.errno)))
status = open("/proc/self/status").read()
print("isolation: %s" % [l for l in status.splitlines() if l.startswith(("CapEff", "CapBnd", "NoNewPrivs"))])
# A setuid-root binary: while it waits for a password, its effective uid shows whether exec gave it root.
su = [p for p in ("/usr/bin/su", "/bin/su") if os.path.exists(p) and os.stat(p).st_mode & 0o4000][0]
proc = subprocess.Popen([su], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
proc.stdout.read(9)  # "Password:": su is running
uids = [l.split()[1:] for l in open("/proc/%d/status" % proc.pid) if l.startswith("Uid:")][0]
print("isolation: setuid %s uids %s" % (su, " ".join(uids)))
proc.kill()
proc.wait()
setup(name="probe", version="1.0", py_modules=["probe"])
'''
LOOP = "while True:\n    pass\n"
# Past limits.memory (512m below), touching every page: the kernel's OOM killer ends it.
HOG = "hog = bytearray(900 << 20)\nprint('isolation: ALLOCATED')\n"
BOMB = r'''
import os, sys, time
children = 0
while True:
    try:
        pid = os.fork()
    except OSError:
        print("isolation: fork refused after %d children" % children)
        sys.exit(1)
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    children += 1
'''


def test_hostile_setup_py_is_contained(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    probe = sdist(src, "probe", {"setup.py": PROBE, "probe.py": "X = 1\n"})
    loop = sdist(src, "loop", {"setup.py": LOOP})
    bomb = sdist(src, "bomb", {"setup.py": BOMB})
    hog = sdist(src, "hog", {"setup.py": HOG})
    # Unpacked under /tmp/builder-work/src in the guest, this member would land in /builder/out,
    # which is copied back to the host: where a broken `..` check would show.
    evil = sdist(src, "evil", {"setup.py": "from setuptools import setup\nsetup(name='evil')\n"},
                 crafted=[member("evil-1.0/../../../../builder/out/escaped.txt")])
    text = """
platforms:
  - name: debian12
    family: debian
    base: {debootstrap: bookworm}
    python: /usr/bin/python3
    limits: {timeout: 25, pids: 64, memory: 512m}
packages:
""" + "".join(entry(n, *s) for n, s in (("probe", probe), ("loop", loop), ("bomb", bomb), ("hog", hog), ("evil", evil)))
    matrix = project(tmp_path / "p", text)
    done = builder(matrix, "all", "-j", "2")
    assert done.returncode == 1, done.stdout + done.stderr
    cells = tmp_path / "p" / ".builder" / "work" / "cells" / "debian12"

    def result(cell: str, stage: str) -> dict:
        return json.loads((cells / cell / f"{stage}.json").read_text())

    log = (cells / "probe" / "build.log").read_text()
    assert "isolation: uid 65534" in log  # not root
    assert "isolation: interfaces ['lo']" in log and "connect refused: ENETUNREACH" in log  # no network
    assert "CONNECTED" not in log and "WROTE" not in log, log  # inputs and system read-only
    assert "cannot write /builder/in/probe-1.0.tar.gz: EACCES" in log  # the inputs: root's, read-only
    assert "cannot write /usr/lib/evil: EROFS" in log  # the system: a read-only file system, not modes
    # No capabilities, and none to be had: uid 65534 has an empty effective set under Docker's
    # defaults too, but there the bounding set still holds them for a setuid binary to take.
    assert r"isolation: ['CapEff:\t0000000000000000', 'CapBnd:\t0000000000000000', 'NoNewPrivs:\t1']" in log
    assert "isolation: setuid /usr/bin/su uids 65534 65534 65534 65534" in log  # setuid gives nothing
    assert result("probe", "publish")["status"] == "passed"  # the well-behaved part still builds
    assert "stopped after 25 s" in result("loop", "build")["reason"]
    # The pid limit stops the bomb; its sleeping children keep the build's output open, so the
    # time limit then ends the cell.
    bomb_log = (cells / "bomb" / "build.log").read_text()
    assert result("bomb", "build")["status"] == "failed" and "fork refused after" in bomb_log
    assert int(bomb_log.split("fork refused after ")[1].split()[0]) < 64
    hog = result("hog", "build")
    assert hog["status"] == "failed" and "limits.memory (512m)" in hog["reason"], hog
    assert "ALLOCATED" not in (cells / "hog" / "build.log").read_text()
    assert sorted(p.name for p in (cells / "evil" / "build").iterdir()) == ["build-result.json"]
    assert "member 'evil-1.0/../../../../builder/out/escaped.txt' has '..' in its path" in result("evil", "build")["reason"]
    published = sorted(p.name for p in (tmp_path / "p" / "eggs" / "debian12").glob("*.egg"))
    assert published == ["probe-1.0-py3.11.egg"]

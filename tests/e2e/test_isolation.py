"""What a package's setup.py can and cannot do in a build guest, proven with hostile sdists."""
from __future__ import annotations

import json
from pathlib import Path

from .conftest import builder, project
from .sdists import entry, member, sdist

PROBE = r'''
import errno, os, socket, sys
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
setup(name="probe", version="1.0", py_modules=["probe"])
'''
LOOP = "while True:\n    pass\n"
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
    evil = sdist(src, "evil", {"setup.py": "from setuptools import setup\nsetup(name='evil')\n"},
                 crafted=[member("../escaped.txt")])
    text = """
platforms:
  - name: debian12
    family: debian
    base: {debootstrap: bookworm}
    python: /usr/bin/python3
    limits: {timeout: 25, pids: 64, memory: 512m}
packages:
""" + "".join(entry(n, *s) for n, s in (("probe", probe), ("loop", loop), ("bomb", bomb), ("evil", evil)))
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
    assert "cannot write /builder/in/probe-1.0.tar.gz: EACCES" in log
    assert result("probe", "publish")["status"] == "passed"  # the well-behaved part still builds
    assert "stopped after 25 s" in result("loop", "build")["reason"]
    # The pid limit stops the bomb; its sleeping children keep the build's output open, so the
    # time limit then ends the cell.
    bomb_log = (cells / "bomb" / "build.log").read_text()
    assert result("bomb", "build")["status"] == "failed" and "fork refused after" in bomb_log
    assert int(bomb_log.split("fork refused after ")[1].split()[0]) < 64
    assert "'..'" in result("evil", "build")["reason"] or ".." in result("evil", "build")["reason"]
    assert not (tmp_path / "escaped.txt").exists() and not (cells / "escaped.txt").exists()
    published = sorted(p.name for p in (tmp_path / "p" / "eggs" / "debian12").glob("*.egg"))
    assert published == ["probe-1.0-py3.11.egg"]

"""Hostile sdists in a real build guest: each is refused with a reason naming the archive, and
nothing outside the cell's folder is touched. (`..` members: test_isolation.py.)

Archives are unpacked inside the guest, which sees no host path: what a member could hit there
is the guest's own file system, and of that only /builder/out is writable and comes back to the
host. So the hostile members aim at /builder/out, and the host's copy of it is what is checked."""
from __future__ import annotations

import json
import tarfile
from pathlib import Path

from .conftest import builder, project
from .sdists import CALM, bomb, digest, entry, matrix_text, member, sdist

SETUP = "from setuptools import setup\nsetup(name='{0}', version='1.0', py_modules=['{0}'])\n"


def crafted(folder: Path, name: str, *extra: tarfile.TarInfo) -> tuple[Path, str]:
    """A well-formed sdist plus crafted members."""
    return sdist(folder, name, {"setup.py": SETUP.format(name), f"{name}.py": "X = 1\n"}, crafted=list(extra))


def test_hostile_archives_are_refused_naming_the_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    cases = {
        "absolute": crafted(src, "absolute", member("/builder/out/planted.txt")),
        # Unpacked in /tmp/builder-work/src, the link would lead to /builder/out, and the member
        # after it would be written through it.
        "symlink": crafted(src, "symlink", member("symlink-1.0/escape", tarfile.SYMTYPE, "../../../../builder/out"),
                           member("symlink-1.0/escape/planted.txt")),
        "hardlink": crafted(src, "hardlink", member("hardlink-1.0/passwd", tarfile.LNKTYPE, "/etc/passwd")),
        # 1 GiB + 64 MiB of zeros in a 1 MB archive: over the 1 GiB cap on what an sdist unpacks to.
        "bomb": bomb(src, "bomb", (1 << 30) + (64 << 20)),
    }
    whole, _ = sdist(src / "whole", "truncated", {"setup.py": SETUP.format("truncated"), "data.txt": "0123456789abcdef" * 8192})
    cut = src / "truncated-1.0.tar.gz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # its pin is of the cut file
    cases["truncated"] = (cut, digest(cut))
    # A build that leaves a link to a host file in its output folder: refused when copied out.
    cases["outlink"] = sdist(src, "outlink", {
        # Files beside the link, so some come before it in the archive: none of them may be kept.
        "setup.py": "import os\nfor n in range(8):\n    open('/builder/out/a%d.egg' % n, 'w').write('x')\n"
        "os.symlink('/etc/shadow', '/builder/out/shadow')\n" + SETUP.format("outlink"),
        "outlink.py": "X = 1\n",
    })
    # A build that hands back more than the platform's limits.output (8m here): refused.
    cases["oversized"] = sdist(src, "oversized", {
        "setup.py": "import os\nopen('/builder/out/big.bin', 'wb').write(os.urandom(12 << 20))\n" + SETUP.format("oversized"),
        "oversized.py": "X = 1\n",
    })
    calm = sdist(src, "calm", CALM)
    text = matrix_text(*(entry(n, *c) for n, c in cases.items()), entry("calm", *calm))
    matrix = project(tmp_path / "p", text.replace("memory: 512m}", "memory: 512m, output: 8m}", 1))
    done = builder(matrix, "all", "-j", "2")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "Traceback" not in out
    cells = tmp_path / "p" / ".builder" / "work" / "cells" / "debian12"

    # Nothing a member aimed at the guest's /builder/out came back in the host's copy of it
    # (checked first: a member that got through shows here whatever the reasons say).
    for cell in ("absolute", "symlink", "hardlink"):
        assert sorted(p.name for p in (cells / cell / "build").iterdir()) == ["build-result.json"], cell

    def reason(cell: str) -> str:
        result = json.loads((cells / cell / "build.json").read_text())
        assert result["status"] == "failed", result
        assert f"[debian12/{cell}] build: failed" in out and f"debian12/{cell}" in out.split("failures")[-1]
        return str(result["reason"])

    assert "refusing absolute-1.0.tar.gz: member" in reason("absolute") and "has an absolute path" in reason("absolute")
    assert "refusing symlink-1.0.tar.gz: link 'symlink-1.0/escape'" in reason("symlink")
    assert "points outside the archive" in reason("symlink")
    assert "refusing hardlink-1.0.tar.gz: link 'hardlink-1.0/passwd' -> '/etc/passwd'" in reason("hardlink")
    assert "refusing bomb-1.0.tar.gz: it unpacks to at least" in reason("bomb")
    assert "over the limit of 1073741824 (at member 'bomb-1.0/zeros.bin')" in reason("bomb")
    assert "decompression bomb" in reason("bomb")
    assert "truncated-1.0.tar.gz is corrupt or truncated" in reason("truncated")
    assert "refused the guest's output /builder/out" in reason("outlink") and "shadow" in reason("outlink")
    assert "the guest's /builder/out is over limits.output (8 MiB): refused" in reason("oversized")
    assert not (cells / "oversized" / "build" / "big.bin").exists()
    # The healthy cell is the only one published.
    # Nothing of the refused output is kept: not the link, not the files copied before it.
    assert [p.name for p in (cells / "outlink" / "build").iterdir()] == []
    assert not [p.name for p in (cells / "outlink").iterdir() if p.name.startswith(".copy-")]
    published = sorted(p.name for p in (tmp_path / "p" / "eggs" / "debian12").glob("*.egg"))
    assert published == ["calm-1.0-py3.11.egg"]

"""A table of bad matrices and selections, through the real command line: each gives one message
with the file and line (the command line, for a selection) and a hint, exit status 2, no
traceback, and nothing run or written. The Docker engine is pointed at nowhere: touching it
would be exit status 4."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
A = "a" * 64
GOOD = f"""\
platforms:
  - name: debian12
    family: debian
    base: {{debootstrap: bookworm}}
    python: /usr/bin/python3
packages:
  - name: six
    version: 1.16.0
    sha256: {A}
  - name: PyYAML
    version: 5.4.1
    sha256: {A}
"""

# (case, text of matrix.yaml, extra arguments, where, what the message says, what the hint says)
CASES = [
    ("wrong type", GOOD.replace("    version: 5.4.1", "    version: 5.4.1\n    formats: egg"), (),
     "matrix.yaml:12", "packages[1].formats: expected a list, got a string", "write it as a list: [egg]"),
    ("wrong type in limits", GOOD.replace("    python:", "    limits: {timeout: soon}\n    python:"), (),
     "matrix.yaml:5", "limits.timeout: expected a whole number", "hint:"),
    ("unknown key", GOOD + "    fromats: [egg]\n", (), "matrix.yaml:13", "packages[1].fromats: unknown key",
     "did you mean 'formats'?"),
    ("duplicate package", GOOD.replace("PyYAML", "Six"), (), "matrix.yaml:10", "are the same package",
     "PEP 503 normalisation"),
    ("platform without Dockerfile", GOOD.replace("debian12", "debian13"), (), "matrix.yaml:2",
     "platforms[debian13]: no Dockerfile at", "two targets, `runtime` and `build`"),
    ("bad sha256 format", GOOD.replace(A, "abc123", 1), (), "matrix.yaml:9", "sha256 must be 64 hex digits",
     "sha256sum FILE"),
    ("YAML syntax error", GOOD + "  - name: [x\n", (), "matrix.yaml:14", "invalid YAML", "unclosed bracket"),
    ("dependency cycle", GOOD.replace("    version: 1.16.0", "    version: 1.16.0\n    depends: [pyyaml]")
     + "    depends: [six]\n", (), "matrix.yaml:7", "dependency cycle: six -> PyYAML -> six", "itself at run time"),
    ("unknown platform", GOOD, ("--platform", "centos9"), "error: no platform matches 'centos9'", "",
     "the matrix declares: debian12"),
    ("unknown package", GOOD, ("--package", "numpy"), "error: no package matches 'numpy'", "", "hint:"),
    ("not a cell id", GOOD, ("--cell", "six"), "error: no cell 'six' in the matrix", "", "python -m builder list"),
]


@pytest.mark.parametrize(("text", "args", "where", "message", "hint"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_stops_before_anything_runs(
    tmp_path: Path, text: str, args: tuple[str, ...], where: str, message: str, hint: str
) -> None:
    (tmp_path / "images" / "debian12").mkdir(parents=True)
    (tmp_path / "images" / "debian12" / "Dockerfile").write_text("FROM scratch AS runtime\nFROM runtime AS build\n")
    (tmp_path / "matrix.yaml").write_text(text)
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent.sock", "BUILDER_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", "builder", "all", *args], cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].startswith(f"error: {where}" if where.startswith("matrix") else where), done.stderr
    assert message in lines[0], done.stderr
    assert len(lines) == 2 and lines[1].startswith("  hint: ") and hint in lines[1], done.stderr
    assert done.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "matrix.yaml"]  # nothing written


@pytest.mark.parametrize(("text", "where"), [
    (GOOD + "    formats: egg\n", "cases/x.yaml:13: packages[1].formats"),
    (GOOD.encode() + b"  # \xff\n", "cases/x.yaml:13: the file is not UTF-8 text"),
], ids=["a bad key", "not UTF-8"])
def test_errors_name_the_matrix_file_as_it_was_given(tmp_path: Path, text: str | bytes, where: str) -> None:
    (tmp_path / "cases" / "images" / "debian12").mkdir(parents=True)
    (tmp_path / "cases" / "images" / "debian12" / "Dockerfile").write_text("FROM scratch AS runtime\nFROM runtime AS build\n")
    path = tmp_path / "cases" / "x.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent.sock", "BUILDER_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", "builder", "all", "--matrix", "cases/x.yaml"], cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 2 and done.stderr.startswith(f"error: {where}"), done.stderr

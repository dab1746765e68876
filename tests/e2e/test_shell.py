"""`builder shell`: the command it runs, and one real interactive session on a pseudo-terminal."""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from .conftest import REPO, builder, in_terminal, project


def test_a_cell_shell_gets_the_cells_guest_and_inputs(tmp_path: Path) -> None:
    matrix = project(tmp_path / "p", (REPO / "matrix.yaml").read_text())
    done = builder(matrix, "shell", "debian12/six", "--print")
    assert done.returncode == 0, done.stderr
    argv = shlex.split(done.stdout.strip().splitlines()[-1])
    assert argv[:3] == ["docker", "run", "--rm"]
    assert argv[argv.index("--network") + 1] == "none" and argv[argv.index("--user") + 1] == "65534:65534"
    mount = argv[argv.index("-v") + 1]
    stage = Path(mount.split(":")[0])
    assert mount.endswith(":/builder") and stage.name == "shell-build"
    spec = json.loads((stage / "spec.json").read_text())
    assert spec["sdist"] == "/builder/in/six-1.16.0.tar.gz" and (stage / "in" / "six-1.16.0.tar.gz").is_file()
    assert (stage / "guest" / "build.py").is_file() and oct((stage / "out").stat().st_mode)[-3:] == "777"
    # A cell whose test failed opens in the runtime image, with the built artifact to install.
    cell = tmp_path / "p" / ".builder" / "work" / "cells" / "debian12" / "six"
    egg = cell / "build" / "six-1.16.0-py3.11.egg"
    egg.parent.mkdir(parents=True, exist_ok=True)
    egg.write_bytes(b"not really an egg")
    (cell / "build.json").write_text(json.dumps({"cell": "debian12/six", "stage": "build", "status": "passed", "artifacts": [str(egg)]}))
    (cell / "test.json").write_text(json.dumps({"cell": "debian12/six", "stage": "test", "status": "failed", "reason": "x"}))
    done = builder(matrix, "shell", "debian12/six", "--print")
    argv = shlex.split(done.stdout.strip().splitlines()[-1])
    stage = Path(argv[argv.index("-v") + 1].split(":")[0])
    assert stage.name == "shell-runtime" and json.loads((stage / "spec.json").read_text())["items"][0]["format"] == "egg"


def test_an_interactive_shell_in_the_runtime_image_has_no_compiler(tmp_path: Path) -> None:
    matrix = project(tmp_path / "p", (REPO / "matrix.yaml").read_text())
    argv = [sys.executable, "-m", "builder", "shell", "debian12", "--matrix", str(matrix)]
    # At the guest's prompt, type as a person would.
    code, text = in_terminal(argv, matrix.parent, (b"$ ", b"command -v cc gcc || echo NO-COMPILER-$((6*7)); id -un; exit\n"))
    assert code == 0, text
    assert "NO-COMPILER-42" in text and "nobody" in text, text

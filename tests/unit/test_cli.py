"""The command line on the shipped matrix, for what needs no Docker engine."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "builder", *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )


def test_matrix_prints_the_enabled_cells_for_each_ci_system() -> None:
    cells = json.loads(cli("matrix", "--format", "json").stdout)["cells"]
    assert len(cells) == 20 and {c["platform"] for c in cells} == {"debian11-py27", "debian12-py27", "debian12", "debian12-vm"}
    github = json.loads(cli("matrix", "--format", "github", "--package", "pyyaml").stdout)
    assert [c["cell"] for c in github["include"]] == ["debian11-py27/pyyaml", "debian12-py27/pyyaml", "debian12/pyyaml"]
    gitlab = yaml.safe_load(cli("matrix", "--format", "gitlab", "--platform", "centos6", "--package", "six").stdout)
    assert gitlab == {"build": {"parallel": {"matrix": [{"CELL": "centos6/six"}]}}}


def test_a_bad_selection_exits_2_with_a_hint() -> None:
    done = cli("list", "--package", "numpy")
    assert done.returncode == 2
    assert "no package matches 'numpy'" in done.stderr and "hint:" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_matrix_file_says_what_to_do(tmp_path: Path) -> None:
    done = cli("list", "--matrix", str(tmp_path / "nowhere.yaml"))
    assert done.returncode == 2 and "matrix file not found" in done.stderr


def test_verify_takes_a_selection_only_with_rebuild() -> None:
    done = cli("verify", "--cell", "debian12/six")
    assert done.returncode == 2 and "choose the cells to rebuild: give --rebuild too" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr

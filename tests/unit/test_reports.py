"""results.json, junit.xml and report.html, from plain data and from a pipeline Run."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from builder.cells.pipeline import Run
from builder.cells.state import StageResult
from builder.matrix.model import Base, BuildSpec, Matrix, Package, Pin, Platform, Settings
from builder.matrix.plan import all_cells
from builder.report.files import ArtifactInfo, CellReport, from_run, write_reports

NASTY = 'gcc said <&> "no" \x1b[31mred\x1b[0m'


def artifact(path: Path, content: bytes) -> ArtifactInfo:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return ArtifactInfo(path.name, str(path), len(content), hashlib.sha256(content).hexdigest())


@pytest.fixture
def cells(tmp_path: Path) -> list[CellReport]:
    eggs = tmp_path / "eggs" / "debian12"
    log = tmp_path / ".builder" / "work" / "cells" / "debian11-py27" / "pyyaml" / "build.log"
    log.parent.mkdir(parents=True)
    log.write_text("".join(f"line {n}\n" for n in range(1, 61)) + f"error: {NASTY}\n")
    return [
        CellReport(
            "debian12/pyyaml", "PyYAML", "debian12", "6.0.2", "passed", "publish", "", "", 12.5,
            (
                artifact(eggs / "PyYAML-6.0.2-py3.11-linux-x86_64.egg", b"egg"),
                artifact(eggs / "PyYAML-6.0.2-cp311-cp311-linux_x86_64 #1.whl", b"wheel!"),
            ),
        ),
        CellReport("debian11-py27/pyyaml", "PyYAML", "debian11-py27", "5.4.1", "failed", "build", NASTY, str(log), 3.25),
        CellReport(
            "debian12/python-dateutil", "python-dateutil", "debian12", "2.9.0", "skipped", "test",
            "skipped after a failure (--fail-fast)", "", 0.0,
        ),
    ]


@pytest.fixture
def folder(tmp_path: Path, cells: list[CellReport]) -> Path:
    folder = tmp_path / "reports" / "latest"
    written = write_reports(folder, "builder all <nightly>", cells)
    assert written == {"json": folder / "results.json", "junit": folder / "junit.xml", "html": folder / "report.html"}
    assert sorted(p.name for p in folder.iterdir()) == ["junit.xml", "report.html", "results.json"]  # no temporaries
    return folder


def test_junit_counts_and_escaping(folder: Path) -> None:
    root = ET.parse(folder / "junit.xml").getroot()
    (suite,) = root.iter("testsuite")
    assert suite.attrib == {
        "name": "builder all <nightly>", "tests": "3", "failures": "1", "errors": "0", "skipped": "1", "time": "15.750",
    }
    cases = {(c.get("classname"), c.get("name")): c for c in suite.iter("testcase")}
    assert set(cases) == {("debian12", "PyYAML"), ("debian11-py27", "PyYAML"), ("debian12", "python-dateutil")}
    assert cases["debian12", "PyYAML"].find("failure") is None and cases["debian12", "PyYAML"].get("time") == "12.500"

    failure = cases["debian11-py27", "PyYAML"].find("failure")
    assert failure is not None
    # The terminal escape cannot be in XML at all; everything else survives as written.
    assert failure.get("message") == NASTY.replace("\x1b", "\ufffd")
    assert failure.get("type") == "build"
    tail = (failure.text or "").strip().splitlines()
    assert len(tail) == 50 and tail[0] == "line 12" and tail[-1].startswith('error: gcc said <&> "no"')

    skipped = cases["debian12", "python-dateutil"].find("skipped")
    assert skipped is not None and skipped.get("message") == "skipped after a failure (--fail-fast)"


def test_results_json(folder: Path, cells: list[CellReport]) -> None:
    document = json.loads((folder / "results.json").read_text())
    assert document["title"] == "builder all <nightly>"
    assert document["summary"] == {"total": 3, "passed": 1, "failed": 1, "skipped": 1, "pending": 0}
    assert [c["id"] for c in document["cells"]] == [c.id for c in cells]
    passed = document["cells"][0]
    assert passed["status"] == "passed" and passed["duration"] == 12.5
    assert passed["artifacts"][1] == {
        "name": "PyYAML-6.0.2-cp311-cp311-linux_x86_64 #1.whl", "path": cells[0].artifacts[1].path, "size": 6,
        "sha256": hashlib.sha256(b"wheel!").hexdigest(),
    }
    assert document["cells"][1]["reason"] == NASTY


class Grid(HTMLParser):
    """The report's grid cells: data-cell id -> (classes, links, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[str, tuple[set[str], list[str], str]] = {}
        self.empty = 0
        self._current: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "td":
            classes = set((found.get("class") or "").split())
            if "none" in classes:
                self.empty += 1
            self._current = found.get("data-cell")
            if self._current:
                self.cells[self._current] = (classes, [], "")
        elif tag == "a" and self._current:
            self.cells[self._current][1].append(found["href"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._current = None

    def handle_data(self, data: str) -> None:
        if self._current:
            classes, links, text = self.cells[self._current]
            self.cells[self._current] = (classes, links, text + data)


def test_html_grid_statuses_and_links(folder: Path, cells: list[CellReport]) -> None:
    page = (folder / "report.html").read_text()
    assert "<script" not in page and "http" not in page  # self-contained, no external assets
    grid = Grid()
    grid.feed(page)
    assert grid.empty == 1  # python-dateutil is not in this report for debian11-py27
    assert {cell_id: classes for cell_id, (classes, _, _) in grid.cells.items()} == {
        "debian12/pyyaml": {"cell", "passed"},
        "debian11-py27/pyyaml": {"cell", "failed"},
        "debian12/python-dateutil": {"cell", "skipped"},
    }
    _, links, text = grid.cells["debian12/pyyaml"]
    assert len(links) == 2
    for link, info in zip(links, cells[0].artifacts, strict=True):
        assert not link.startswith("/")
        target = (folder / unquote(link)).resolve()
        assert target.is_file() and target == Path(info.path).resolve()
        assert info.sha256 in text
    assert "12.5 s" in text and "6 B" in text

    _, links, text = grid.cells["debian11-py27/pyyaml"]
    assert (folder / unquote(links[0])).resolve() == Path(cells[1].log).resolve()
    assert NASTY in text  # html.parser unescapes: the reason came through intact


def test_from_run_takes_outcome_and_the_last_stage_artifacts(tmp_path: Path) -> None:
    platform = Platform("debian12", "docker", "debian", "/usr/bin/python3", Base("debootstrap", "bookworm"), Path("x"))
    packages = tuple(Package(n, ("egg",), BuildSpec(Pin(n, "1.0", "a" * 64))) for n in ("six", "PyYAML", "lxml"))
    matrix = Matrix(tmp_path / "matrix.yaml", Settings(work=tmp_path / "work"), (platform,), packages)
    six, pyyaml, lxml = all_cells(matrix)
    egg = tmp_path / "eggs" / "six-1.0.egg"
    egg.parent.mkdir()
    egg.write_bytes(b"six")
    run = Run(matrix, [six, pyyaml, lxml], echo=lambda line: None)
    run.results = {
        six.id: {
            "build": StageResult(six.id, "build", "passed", artifacts=["/gone/six-1.0.egg"], duration=2.0),
            "publish": StageResult(six.id, "publish", "passed", artifacts=[str(egg), str(tmp_path / "gone.whl")], duration=0.5),
        },
        pyyaml.id: {"build": StageResult(pyyaml.id, "build", "failed", reason="no yaml.h", log="/l/build.log", duration=1.0)},
    }
    reports = {r.id: r for r in from_run(run)}
    assert list(reports) == ["debian12/six", "debian12/pyyaml", "debian12/lxml"]
    assert reports["debian12/six"] == CellReport(
        "debian12/six", "six", "debian12", "1.0", "passed", "publish", "", "", 2.5,
        (
            ArtifactInfo("six-1.0.egg", str(egg), 3, hashlib.sha256(b"six").hexdigest()),
            ArtifactInfo("gone.whl", str(tmp_path / "gone.whl"), 0, ""),
        ),
    )
    failed = reports["debian12/pyyaml"]
    assert (failed.status, failed.stage, failed.reason, failed.log) == ("failed", "build", "no yaml.h", "/l/build.log")
    assert reports["debian12/lxml"].status == "pending"
    page = (write_reports(tmp_path / "r", "t", list(reports.values()))["html"]).read_text()
    assert "gone.whl</span>" in page and "missing" in page  # listed, never linked


CHROMIUM = [
    "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium to render report.html with")
def test_a_browser_renders_the_report(folder: Path, tmp_path: Path) -> None:
    url = (folder / "report.html").as_uri()
    profile = tmp_path / "profile"
    env = {**os.environ, "HOME": str(tmp_path)}
    dom = subprocess.run(
        [*CHROMIUM, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True, text=True, timeout=60, env=env, check=True,
    ).stdout
    for cell_id, status in (("debian12/pyyaml", "passed"), ("debian11-py27/pyyaml", "failed"),
                            ("debian12/python-dateutil", "skipped")):
        assert f'class="cell {status}" data-cell="{cell_id}"' in dom
    assert dom.count('class="artifact"') == 2

    shot = tmp_path / "shot.png"
    subprocess.run(
        [*CHROMIUM, f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=1200,800", url],
        capture_output=True, timeout=60, env=env, check=True,
    )
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000

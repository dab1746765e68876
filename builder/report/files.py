"""Reports a run leaves for people and CI: results.json, junit.xml and a static report.html.

The writers take plain data (CellReport) and nothing else; `from_run` is the one bridge from a
pipeline Run.
"""
from __future__ import annotations

import hashlib
import html
import json
import os
import re
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast
from urllib.parse import quote

from ..cells.state import Status

if TYPE_CHECKING:
    from ..cells.pipeline import Run

LOG_TAIL = 50


@dataclass(frozen=True)
class ArtifactInfo:
    name: str
    path: str
    size: int  # bytes; 0 with sha256 "" when the file is gone
    sha256: str


@dataclass(frozen=True)
class CellReport:
    id: str
    package: str
    platform: str
    version: str
    status: Status
    stage: str  # the first stage that did not pass, else the last one run
    reason: str
    log: str  # a path, or ""
    duration: float  # seconds, all stages
    artifacts: tuple[ArtifactInfo, ...] = ()


def from_run(run: Run) -> list[CellReport]:
    # Imported here: builder.report pulls in the pipeline and the Docker client, which the
    # writers (and a merge of reports from several CI jobs) have no use for.
    from .terminal import outcome

    reports = []
    for cell in run.cells:
        status, stage, reason, log = outcome(run, cell)
        last = run.last(cell)
        reports.append(
            CellReport(
                id=cell.id,
                package=cell.package.name,
                platform=cell.platform.name,
                version=cell.spec.source.version,
                status=cast(Status, status),
                stage=stage,
                reason=reason,
                log=log,
                duration=sum(r.duration for r in run.results.get(cell.id, {}).values()),
                artifacts=tuple(artifact_info(Path(a)) for a in (last.artifacts if last else ())),
            )
        )
    return reports


def artifact_info(path: Path) -> ArtifactInfo:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return ArtifactInfo(path.name, str(path), 0, "")
    return ArtifactInfo(path.name, str(path), path.stat().st_size, digest.hexdigest())


def write_reports(folder: Path, title: str, cells: Sequence[CellReport]) -> dict[str, Path]:
    """Write results.json, junit.xml and report.html into `folder`; {"json"|"junit"|"html": path}."""
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "json": _write(folder / "results.json", results_json(title, cells)),
        "junit": _write(folder / "junit.xml", junit_xml(title, cells)),
        "html": _write(folder / "report.html", report_html(folder, title, cells)),
    }


def _write(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _counts(cells: Sequence[CellReport]) -> dict[str, int]:
    counts = {status: sum(c.status == status for c in cells) for status in ("passed", "failed", "skipped", "pending")}
    return {"total": len(cells), **counts}


def results_json(title: str, cells: Sequence[CellReport]) -> str:
    document = {"title": title, "summary": _counts(cells), "cells": [asdict(c) for c in cells]}
    return json.dumps(document, indent=2) + "\n"


# XML 1.0 cannot carry these at all, not even escaped; build logs hold them (ANSI colours).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def log_tail(log: str, lines: int = LOG_TAIL) -> str:
    if not log:
        return ""
    try:
        with open(log, encoding="utf-8", errors="replace") as f:
            return "".join(deque(f, maxlen=lines))
    except OSError:
        return ""


def junit_xml(title: str, cells: Sequence[CellReport]) -> str:
    counts = _counts(cells)
    total_time = f"{sum(c.duration for c in cells):.3f}"
    suite_attrs = {
        "name": _xml_text(title),
        "tests": str(counts["total"]),
        "failures": str(counts["failed"]),
        "errors": "0",
        # JUnit has no "not run yet": pending cells count as skipped.
        "skipped": str(counts["skipped"] + counts["pending"]),
        "time": total_time,
    }
    root = ET.Element("testsuites", suite_attrs)
    suite = ET.SubElement(root, "testsuite", suite_attrs)
    for cell in cells:
        case = ET.SubElement(
            suite, "testcase", {"classname": cell.platform, "name": cell.package, "time": f"{cell.duration:.3f}"}
        )
        message = _xml_text(cell.reason)
        if cell.status == "failed":
            failure = ET.SubElement(case, "failure", {"message": message, "type": cell.stage or "failed"})
            failure.text = _xml_text(log_tail(cell.log) or cell.reason)
        elif cell.status in ("skipped", "pending"):
            ET.SubElement(case, "skipped", {"message": message or cell.status})
        if cell.log:
            ET.SubElement(case, "system-out").text = _xml_text(f"log: {cell.log}")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _link(folder: Path, target: str) -> str:
    relative = os.path.relpath(target, folder).replace(os.sep, "/")
    return html.escape(quote(relative))


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def _cell_html(folder: Path, cell: CellReport) -> str:
    e = html.escape
    parts = [
        f'<td class="cell {e(cell.status)}" data-cell="{e(cell.id)}" title="{e(cell.id)} {e(cell.version)}">',
        f'<div class="head"><span class="status">{e(cell.status)}</span>'
        f'<span class="version">{e(cell.version)}</span>'
        + (f'<span class="duration">{cell.duration:.1f} s</span>' if cell.duration else "")
        + "</div>",
    ]
    if cell.status != "passed" and cell.reason:
        stage = f"<b>{e(cell.stage)}:</b> " if cell.stage else ""
        parts.append(f'<p class="reason">{stage}{e(cell.reason)}</p>')
    if cell.log and cell.status == "failed":
        parts.append(f'<p class="log"><a href="{_link(folder, cell.log)}">log</a></p>')
    if cell.artifacts:
        parts.append('<ul class="artifacts">')
        for a in cell.artifacts:
            if a.sha256:
                name = f'<a class="artifact" href="{_link(folder, a.path)}">{e(a.name)}</a>'
                detail = f'<span class="size">{_size(a.size)}</span><code class="sha256">{e(a.sha256)}</code>'
            else:
                name, detail = f'<span class="artifact">{e(a.name)}</span>', '<span class="size">missing</span>'
            parts.append(f"<li>{name} {detail}</li>")
        parts.append("</ul>")
    parts.append("</td>")
    return "".join(parts)


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d1d1f; background: #fafafa; }
h1 { font-size: 1.4em; margin: 0 0 .3em; }
.summary span { display: inline-block; margin-right: 1.2em; }
.summary .failed { color: #cf222e; font-weight: 600; }
table.grid { border-collapse: separate; border-spacing: 4px; margin-top: 1em; }
.grid th { text-align: left; padding: 6px 8px; font-weight: 600; white-space: nowrap; vertical-align: top; }
.grid thead th { border-bottom: 2px solid #ccc; }
.grid td { vertical-align: top; padding: 6px 8px; border-radius: 4px; min-width: 16em; max-width: 24em; }
.cell .head { display: flex; gap: .6em; align-items: baseline; font-weight: 600; }
.cell .version { font-weight: normal; color: #57606a; font-size: .9em; }
.cell .duration { margin-left: auto; font-weight: normal; color: #57606a; font-size: .9em; }
.cell.passed { background: #dff3e3; border-left: 5px solid #2da44e; }
.cell.failed { background: #fde2e1; border-left: 5px solid #cf222e; }
.cell.skipped, .cell.pending { background: #ececec; border-left: 5px solid #8c959f; color: #57606a; }
.cell.none { background: transparent; color: #aaa; text-align: center; }
.passed .status { color: #1a7f37; } .failed .status { color: #cf222e; }
.reason { margin: .3em 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.log { margin: .3em 0 0; }
.artifacts { list-style: none; padding: 0; margin: .4em 0 0; }
.artifacts li { margin-bottom: .4em; }
.artifacts a, .log a { color: #0969da; overflow-wrap: anywhere; }
.size { color: #57606a; margin-left: .4em; font-size: .9em; white-space: nowrap; }
.sha256 { display: block; font-size: .75em; color: #57606a; overflow-wrap: anywhere; }
"""


def report_html(folder: Path, title: str, cells: Sequence[CellReport]) -> str:
    e = html.escape
    platforms = list(dict.fromkeys(c.platform for c in cells))
    packages = list(dict.fromkeys(c.package for c in cells))
    by_pair = {(c.package, c.platform): c for c in cells}
    rows = []
    for package in packages:
        tds = []
        for platform in platforms:
            cell = by_pair.get((package, platform))
            tds.append('<td class="cell none">—</td>' if cell is None else _cell_html(folder, cell))
        rows.append(f'<tr><th scope="row">{e(package)}</th>{"".join(tds)}</tr>')
    counts = _counts(cells)
    summary = "".join(f'<span class="{k}">{k}: {n}</span>' for k, n in counts.items() if n or k == "total")
    head = "".join(f'<th scope="col">{e(p)}</th>' for p in platforms)
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n"
        f'<h1>{e(title)}</h1>\n<p class="summary">{summary}</p>\n'
        f'<table class="grid"><thead><tr><th>package</th>{head}</tr></thead>\n<tbody>\n'
        + "\n".join(rows)
        + "\n</tbody></table>\n</body></html>\n"
    )

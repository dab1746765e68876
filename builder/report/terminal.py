"""The summary a run ends with: a packages × platforms table, then one line per failure.

Everything of the run put in a table (names, ids, reasons, paths) goes through escape(): rich
reads `[...]` as markup, and `packages[psycopg2].system` would print as `packages.system`."""
from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..cells.cell import reproduce
from ..cells.pipeline import Run
from ..matrix.plan import Cell

MARKS = {"passed": "[green]passed[/]", "failed": "[red]FAILED[/]", "skipped": "[yellow]skipped[/]"}


def outcome(run: Run, cell: Cell) -> tuple[str, str, str, str]:
    """(status, stage, reason, log) of a cell: the first stage that did not pass, else the last."""
    stages = run.results.get(cell.id, {})
    for name, result in stages.items():
        if not result.ok:
            return result.status, name, result.reason, result.log
    if not stages:
        return "pending", "", "", ""
    last = list(stages.values())[-1]
    return "passed", last.stage, "", last.log


def passed(run: Run, cell: Cell, final_stage: str) -> bool:
    stages = run.results.get(cell.id, {})
    return final_stage in stages and all(r.ok for r in stages.values())


def summary(run: Run, console: Console, final_stage: str) -> None:
    platforms = list(dict.fromkeys(c.platform.name for c in run.cells))
    packages = list(dict.fromkeys(c.package.name for c in run.cells))
    grid = Table(title=f"builder {escape(final_stage)}: packages × platforms")
    grid.add_column("package")
    for name in platforms:
        grid.add_column(escape(name))
    by_pair = {(c.package.name, c.platform.name): c for c in run.cells}
    for package in packages:
        row = [escape(package)]
        for platform in platforms:
            cell = by_pair.get((package, platform))
            if cell is None:
                row.append("—")
                continue
            status, stage, _, _ = outcome(run, cell)
            mark = MARKS.get(status, escape(status))
            row.append(mark if status == "passed" else f"{mark} ({escape(stage)})")
        grid.add_row(*row)
    console.print(grid)
    failures = [c for c in run.cells if outcome(run, c)[0] != "passed"]
    if failures:
        table = Table(title="failures", show_lines=True)
        for column in ("cell", "reason", "log", "reproduce"):
            table.add_column(column, overflow="fold")
        for cell in failures:
            status, stage, reason, log = outcome(run, cell)
            table.add_row(*(escape(text) for text in (cell.id, f"{stage}: {reason}", log or "—", reproduce(cell, stage))))
        console.print(table)


def cell_list(cells: Sequence[Cell], run: Run, console: Console) -> None:
    table = Table(title="cells")
    for column in ("id", "package", "version", "platform", "enabled", "last result"):
        table.add_column(column)
    for cell in cells:
        status, stage, reason, _ = outcome(run, cell)
        last = "—" if status == "pending" else (f"{status} ({stage})" + (f": {reason}" if reason else ""))
        table.add_row(*(escape(text) for text in (
            cell.id, cell.package.name, cell.spec.source.version, cell.platform.name,
            "yes" if cell.platform.enabled else "no", last,
        )))
    console.print(table)


def progress(run: Run) -> Table:
    """What runs now: for the live display on a terminal."""
    import time

    table = Table(box=None, show_header=False, pad_edge=False)
    now = time.monotonic()
    finished = sum(1 for c in run.cells if "publish" in run.results.get(c.id, {}) or run.failed(c))
    for cell_id, (stage, started) in sorted(run.running.items()):
        table.add_row(f"[cyan]{escape(stage)}[/]", escape(cell_id), f"{now - started:5.1f} s")
    table.add_row("", f"[dim]{finished} of {len(run.cells)} cells finished[/]", "")
    return table


def rebuilt(run: Run, cells: Sequence[Cell], console: Console) -> tuple[list[Cell], list[Cell]]:
    """What `verify --rebuild` found, a cell a line (and below a differing one, each member that
    differs and where the rebuild's files are); returns (the cells that differ, those unchecked).
    Plain text: it is read in CI logs and searched for hashes and member names."""

    def say(line: str) -> None:
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    differs: list[Cell] = []
    unchecked: list[Cell] = []
    for cell in cells:
        found = run.rebuilt.get(cell.id)
        if found is None:  # it never got to the rebuild: the stage it failed at says why
            status, stage, reason, _ = outcome(run, cell)
            unchecked.append(cell)
            say(f"{cell.id}: not checked: {stage}: {reason}" if status != "passed" else f"{cell.id}: not checked")
        elif found.status == "identical":
            say(f"{cell.id}: identical: " + ", ".join(c.filename for c in found.comparisons))
        elif found.status == "differs":
            differs.append(cell)
            say(f"{cell.id}: NOT REPRODUCIBLE: {found.reason}")
            for comparison in found.comparisons:
                for diff in comparison.differences:
                    if diff.name:
                        say(f"  {comparison.filename}: {diff.name}: {diff.kind}" + (f" ({diff.detail})" if diff.detail else ""))
                if comparison.diffoscope is not None:
                    say(f"  {comparison.filename}: diffoscope's report: {comparison.diffoscope}")
                elif comparison.diffoscope_note and not comparison.identical:
                    say(f"  {comparison.filename}: {comparison.diffoscope_note}")
            if found.folder is not None:
                say(f"  the rebuild's files and log: {found.folder}")
        else:
            unchecked.append(cell)
            say(f"{cell.id}: not checked: {found.reason}")
    same = len(cells) - len(differs) - len(unchecked)
    say(f"verify --rebuild: {same} of {len(cells)} cell(s) rebuilt bit-identical"
        + (f"; not reproducible: {', '.join(c.id for c in differs)}" if differs else "")
        + (f"; not checked: {', '.join(c.id for c in unchecked)}" if unchecked else ""))
    return differs, unchecked

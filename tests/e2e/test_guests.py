"""A cell's guests, as the engine saw them: one fresh build guest and one fresh test guest per
cell, the test guest started while the cell builds, every guest removed by the engine when the
run ends — also the test guest started for a cell whose build then failed."""
from __future__ import annotations

import json
import time
from pathlib import Path

import docker

from .conftest import project
from .sdists import CALM, containers, entry, matrix_text, no_strays, sdist, start  # noqa: F401 - no_strays: autouse

BROKEN = {"setup.py": "raise RuntimeError('broken on purpose: this setup.py cannot build')\n"}


def events(cell: str, pid: int, since: float, settle: float = 30) -> dict[str, dict[str, list[int]]]:
    """By container id: the engine's events (create, start, exec_create, die, destroy) for the
    guests of `cell` that builder process `pid` made, with their times in ns. Waits until each
    has been destroyed (the engine removes a stopped guest), or `settle` seconds."""
    client = docker.from_env()
    deadline = time.time() + settle
    while True:
        found: dict[str, dict[str, list[int]]] = {}
        for event in client.events(since=int(since), until=int(time.time()) + 1, decode=True,
                                   filters={"type": "container", "label": f"io.builder.cell={cell}"}):
            if event["Actor"]["Attributes"].get("io.builder.pid") != str(pid):
                continue
            action = event["Action"].split(":")[0]
            found.setdefault(event["Actor"]["ID"], {"image": [event["Actor"]["Attributes"]["image"]]})
            found[event["Actor"]["ID"]].setdefault(action, []).append(event["timeNano"])
        if (found and all("destroy" in e for e in found.values())) or time.time() > deadline:
            return found
        time.sleep(0.5)


def run(tmp_path: Path, name: str, files: dict[str, str]) -> tuple[Path, int, float, str]:
    matrix = project(tmp_path / "p", matrix_text(entry(name, *sdist(tmp_path / "src", name, files))))
    since = time.time() - 1
    proc = start(matrix, "all", "-j1", "--cell", f"debian12/{name}")
    out, _ = proc.communicate(timeout=600)
    return matrix.parent, proc.pid, since, f"exit {proc.returncode}: {out}"


def state(root: Path, name: str, stage: str) -> dict:
    return json.loads((root / ".builder" / "work" / "cells" / "debian12" / name / f"{stage}.json").read_text())


def test_each_cell_gets_one_fresh_guest_per_role_and_the_test_guest_starts_while_it_builds(tmp_path: Path) -> None:
    root, pid, since, said = run(tmp_path, "calm", CALM)
    assert state(root, "calm", "publish")["status"] == "passed", said
    images = state(root, "calm", "test")["images"]
    seen = events("debian12/calm", pid, since)
    by_image = {role: [c for c, e in seen.items() if e["image"] == [images[role]]] for role in ("build", "runtime")}
    assert len(by_image["build"]) == 1 and len(by_image["runtime"]) == 1, seen
    build, test = seen[by_image["build"][0]], seen[by_image["runtime"][0]]
    # Fresh: made for this cell, started once, and used by nothing before its test ran in it.
    assert len(test["create"]) == 1 and len(test["start"]) == 1
    assert min(test["exec_create"]) > max(build["exec_die"]), "the test ran only after the build ended"
    # Started ahead: the test guest was up before the build's work was done.
    assert test["start"][0] < max(build["exec_die"]), seen
    for guest in (build, test):
        assert "destroy" in guest, f"the engine removed every guest: {seen}"
    assert containers(pid) == []


def test_the_test_guest_of_a_cell_whose_build_failed_is_stopped_and_removed_unused(tmp_path: Path) -> None:
    root, pid, since, said = run(tmp_path, "broken", BROKEN)
    assert "exit 1" in said and "broken on purpose" in state(root, "broken", "build")["reason"], said
    images = state(root, "broken", "build")["images"]
    seen = events("debian12/broken", pid, since)
    tests = [e for e in seen.values() if e["image"] != [images["build"]]]
    assert len(tests) == 1, seen
    assert "exec_create" not in tests[0], "nothing ran in the unused test guest"
    assert "destroy" in tests[0], f"the unused test guest was removed: {seen}"
    assert containers(pid) == []

"""Platforms whose machines cannot be made here stop before anything is fetched."""
from __future__ import annotations

from pathlib import Path

import pytest

from builder.cells import pipeline
from builder.errors import ImageError
from builder.matrix import load as config
from builder.matrix import plan

REPO = Path(__file__).resolve().parents[2]


class Checker:
    """A backend whose check fails for the named platforms, as a missing base or box does."""

    def __init__(self, missing: set[str]) -> None:
        self.missing = missing
        self.asked: list[str] = []

    def check(self, matrix: object, platform: object) -> None:
        name = platform.name  # type: ignore[attr-defined]
        self.asked.append(name)
        if name in self.missing:
            raise ImageError(f"base of {name} missing", hint=f"provide {name}'s base")


@pytest.fixture
def matrix() -> config.Matrix:
    return config.load(REPO / "matrix.yaml")


def test_only_blocked_platforms_are_refused_and_the_rest_run(matrix: config.Matrix, monkeypatch: pytest.MonkeyPatch) -> None:
    checker = Checker({"centos6"})
    cells = plan.select(matrix, platforms=["centos6", "debian12"], packages=["six"])
    blocked = pipeline.preflight(matrix, cells, {"docker": checker})
    assert sorted(checker.asked) == ["centos6", "debian12"] and list(blocked) == ["centos6"]
    pipeline.refuse_if_blocked(blocked, cells)  # debian12 can run: no refusal
    lines: list[str] = []
    monkeypatch.setattr("builder.cells.state.save", lambda *a: None)
    run = pipeline.Run(matrix, cells, echo=lines.append, blocked=blocked)
    pipeline.unavailable(run)
    assert [c.id for c in run.live()] == ["debian12/six"]
    assert lines == ["[centos6/six] images: failed — base of centos6 missing (provide centos6's base)"]


def test_when_nothing_selected_can_run_the_reason_is_the_whole_answer(matrix: config.Matrix) -> None:
    checkers = {name: Checker({"centos6", "freebsd"}) for name in ("docker", "vagrant")}
    one = plan.select(matrix, platforms=["centos6"])
    with pytest.raises(ImageError) as caught:
        pipeline.refuse_if_blocked(pipeline.preflight(matrix, one, checkers), one)
    assert caught.value.message == "base of centos6 missing" and caught.value.hint == "provide centos6's base"
    two = plan.select(matrix, platforms=["centos6", "freebsd"])
    with pytest.raises(ImageError) as caught:
        pipeline.refuse_if_blocked(pipeline.preflight(matrix, two, checkers), two)
    assert "centos6: base of centos6 missing" in caught.value.message and "freebsd: base of freebsd missing" in caught.value.message

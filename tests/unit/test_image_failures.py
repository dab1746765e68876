"""An image that fails to build says why (apt's own words), in the reason and in the platform's
log; the run exits with the README's status for it; and no shell is offered into an image that
was never made."""
from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from pathlib import Path

import docker.errors
import pytest
from rich.console import Console

from builder import __main__ as cli
from builder.cells import pipeline
from builder.errors import FetchError, ImageError
from builder.machines import engine
from builder.matrix.load import loads
from builder.matrix.model import Matrix, Platform
from builder.matrix.plan import all_cells
from builder.report import terminal

MATRIX = """\
settings: {output: out/eggs, work: out/work, cache: out/cache}
platforms:
  - {name: debian12, family: debian, base: {debootstrap: bookworm}, python: /usr/bin/python3}
packages:
  - {name: psycopg2, version: "2.9.9", sha256: %s, formats: [egg], system: {debian: {runtime: [libpq-nosuch]}}}
""" % ("a" * 64)

APT_LOG = [
    {"stream": "Step 4/5 : RUN apt-get update && apt-get install -y python3 libpq-nosuch\n"},
    {"stream": " ---> Running in 0123456789ab\n"},
    {"stream": "Reading package lists...\n"},
    {"stream": "Building dependency tree...\n"},
    {"stream": "\x1b[91mE: Unable to locate package libpq-nosuch\n"},
    {"stream": "\x1b[0mRemoving intermediate container 0123456789ab\n"},
    {"error": "The command '/bin/sh -c apt-get update && apt-get install -y python3 libpq-nosuch' "
              "returned a non-zero code: 100"},
]


def matrix(tmp_path: Path) -> Matrix:
    (tmp_path / "images" / "debian12").mkdir(parents=True)
    (tmp_path / "images" / "debian12" / "Dockerfile").write_text("FROM scratch\n")
    return loads(MATRIX, tmp_path / "matrix.yaml")


class RefusingImages:
    def build(self, **kwargs: object) -> None:
        raise docker.errors.BuildError(str(APT_LOG[-1]["error"]), iter(APT_LOG))


def apt_failure(platform: Platform) -> ImageError:
    fake = type("Engine", (), {"images": RefusingImages()})()
    with pytest.raises(ImageError) as caught:
        engine.build_image(fake, platform, Path("ctx"), "runtime", "builder/debian12:runtime-x", {})  # type: ignore[arg-type]
    return caught.value


def test_the_reason_names_what_apt_said(tmp_path: Path) -> None:
    exc = apt_failure(matrix(tmp_path).platforms[0])
    assert "E: Unable to locate package libpq-nosuch" in exc.message.splitlines()[0], exc.message
    assert "Unable to locate package libpq-nosuch" in pipeline._one_line(exc)


class FailingBackend:
    def __init__(self, exc: ImageError) -> None:
        self.exc = exc

    def leftovers(self, platforms: object = ()) -> list[str]:
        return []

    def prepare(self, matrix: Matrix, platform: Platform, files: Mapping[str, Path], log: Callable[[str], None]) -> None:
        log("building image builder/debian12:runtime-x")
        raise self.exc


def failed_at_images(tmp_path: Path) -> pipeline.Run:
    m = matrix(tmp_path)
    exc = apt_failure(m.platforms[0])
    run = pipeline.Run(m, all_cells(m), echo=lambda line: None, backends={"docker": FailingBackend(exc)})  # type: ignore[dict-item]
    pipeline.images(run)
    return run


def test_the_platforms_log_keeps_the_image_builds_tail(tmp_path: Path) -> None:
    run = failed_at_images(tmp_path)
    result = run.results["debian12/psycopg2"]["images"]
    assert "Unable to locate package libpq-nosuch" in result.reason
    assert result.log and "Reading package lists..." in Path(result.log).read_text()
    assert "E: Unable to locate package libpq-nosuch" in Path(result.log).read_text()


def test_no_shell_is_offered_into_an_image_never_built(tmp_path: Path) -> None:
    run = failed_at_images(tmp_path)
    screen = io.StringIO()
    terminal.summary(run, Console(file=screen, width=300, color_system=None), "all")
    text = screen.getvalue()
    assert "all --cell debian12/psycopg2" in text
    assert "builder shell" not in text, text


def test_a_run_whose_cells_all_failed_at_images_exits_5_and_at_fetch_3(tmp_path: Path) -> None:
    run = failed_at_images(tmp_path)
    assert cli.cells_failed(run, run.cells, "all").exit_code == ImageError.exit_code == 5
    m = run.matrix
    fetched = pipeline.Run(m, all_cells(m), echo=lambda line: None)
    fetched.record(fetched.cells[0], pipeline.StageResult(fetched.cells[0].id, "fetch", "failed", reason="sha256 mismatch"))
    assert cli.cells_failed(fetched, fetched.cells, "all").exit_code == FetchError.exit_code == 3


def test_the_summary_prints_key_paths_as_they_are(tmp_path: Path) -> None:
    m = matrix(tmp_path)
    run = pipeline.Run(m, all_cells(m), echo=lambda line: None)
    reason = "x.so needs libpq.so.5: add it to packages[psycopg2].system.debian.runtime in [bold]matrix.yaml"
    run.record(run.cells[0], pipeline.StageResult(run.cells[0].id, "test", "failed", reason=reason, log="/w/[x]/test.log"))
    screen = io.StringIO()
    terminal.summary(run, Console(file=screen, width=400, color_system=None), "all")
    terminal.cell_list(run.cells, run, Console(file=screen, width=400, color_system=None))
    text = screen.getvalue()
    assert text.count("packages[psycopg2].system.debian.runtime in [bold]matrix.yaml") == 2, text
    assert "/w/[x]/test.log" in text

"""`shell`: a person inside a platform's image, or inside a cell where it failed.

The guest is made as a cell's is: no network, the same user, the same /builder layout with the
cell's source, tools, spec and scripts, so the failing command can be run again by hand.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import BuilderError
from ..machines.base import Backend, Role
from ..matrix import plan
from ..matrix.model import Matrix
from . import cell as cells
from . import pipeline, state

GUEST_ENV = {"HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}


@dataclass(frozen=True)
class Shell:
    argv: list[str]
    role: Role
    hint: str  # what to type inside


def prepare(
    matrix: Matrix, target: str, role: Role | None, echo: pipeline.Echo, backends: Mapping[str, Backend]
) -> Shell:
    cell_id = target if "/" in target else None
    selected = plan.select(matrix, cells=[cell_id]) if cell_id else plan.select(matrix, platforms=[target])
    pipeline.refuse_if_blocked(pipeline.preflight(matrix, selected[-1:], backends), selected[-1:])
    run = pipeline.Run(matrix, selected, echo=echo, backends=backends)
    pipeline.fetch(run)
    pipeline.images(run)
    platform = selected[-1].platform
    images = run.images.get(platform.name)
    if images is None:
        failed = next(iter(run.results.values()))
        reason = next(iter(failed.values())).reason
        raise BuilderError(f"no images for {platform.name}: {reason}")
    backend = backends[platform.backend]
    if cell_id is None:
        chosen: Role = role or "runtime"
        mounts = {str(cells.GUEST_DIR): "/builder/guest:ro"}
        return Shell(backend.interactive(platform, images, chosen, mounts, GUEST_ENV), chosen, f"{platform.name} {chosen} image")
    cell = next(c for c in selected if c.id == cell_id)
    built = state.load(matrix.settings.folders, cell, "build")
    tested = state.load(matrix.settings.folders, cell, "test")
    chosen = role or ("runtime" if built and built.ok and tested and not tested.ok else "build")
    folder = state.cell_dir(matrix.settings.folders, cell) / f"shell-{chosen}"
    spec: Mapping[str, object]
    if chosen == "build":
        spec, files = cells.build_inputs(cell, run.sources)
        script = "build.py"
    else:
        if not (built and built.ok and built.artifacts):
            raise BuilderError(f"{cell.id} has no build to test", hint=f"run: python -m builder build --cell {cell.id}")
        artifact = Path(built.artifacts[0])
        fmt = cells.artifact_format(str(artifact))
        deps: list[Path] = []
        for dep in plan.dependencies(cell, selected):  # installed first, as in the cell's test
            dep_build = state.load(matrix.settings.folders, dep, "build")
            if not (dep_build and dep_build.ok):
                raise BuilderError(f"{cell.id} needs {dep.id}, which has no build", hint=f"run: python -m builder build --cell {dep.id}")
            deps += [Path(a) for a in dep_build.artifacts if cells.artifact_format(a) == fmt]
        spec, files = cells.checks_inputs(cell, [(artifact, fmt, deps)], run.sources)
        script = "check.py"
    stage = cells.stage_inputs(folder, spec, files)
    out = stage / "out"
    out.mkdir()
    os.chmod(out, 0o777)  # the guest user writes here, as in a cell
    for path in [stage, *stage.rglob("*")]:  # readable by the guest user, as a cell's copy is
        os.chmod(path, os.stat(path).st_mode | (0o755 if path.is_dir() else 0o444))
    hint = f"{platform.python} /builder/guest/{script} /builder/spec.json   # what the {chosen} stage ran"
    argv = backend.interactive(platform, images, chosen, {str(stage): "/builder"}, GUEST_ENV)
    return Shell(argv, chosen, hint)


def enter(shell: Shell) -> None:
    """Replace this process with the shell, so the terminal is the guest's."""
    if shutil.which(shell.argv[0]) is None:
        raise BuilderError(f"{shell.argv[0]} is not on PATH", hint="install the docker client (or ssh, for vagrant platforms)")
    argv = list(shell.argv)
    if os.isatty(0) and argv[0] == "docker":  # the vagrant backend's ssh asks for its terminal itself
        argv.insert(argv.index("-i") + 1, "-t")
    os.execvp(argv[0], argv)

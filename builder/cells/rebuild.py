"""`verify --rebuild`: published cells built again from their pinned inputs, in fresh guests, and
compared byte for byte with what is published (output/reproduce.py compares)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from .. import __version__
from ..errors import BuilderError
from ..matrix.model import Matrix
from ..matrix.plan import Cell
from ..output.reproduce import compare
from . import cell as cells
from .pipeline import Run, _one_line, _parallel, _unlike_manifest, fetch, images, unavailable
from .state import Rebuilt, StageResult


def rebuild_folder(matrix: Matrix) -> Path:
    """Where `verify --rebuild` builds: beside the cells' state, never in the output folder."""
    return matrix.settings.work / "rebuild"


def rebuild(run: Run) -> None:
    """`verify --rebuild`: build each published cell again from its pinned inputs, in fresh guests
    as the build stage does, into rebuild_folder(), and compare what it makes with what is
    published, byte for byte. Only a cell published with the inputs the matrix gives now can be
    rebuilt to its bytes: one published with others (another image, an older builder) is said so,
    not rebuilt."""
    from ..fetch import sha256_file
    from ..output import publish as publisher

    output = run.matrix.settings.output
    manifests: dict[str, publisher.Manifest | None] = {}
    todo: list[Cell] = []
    for cell in run.live():
        name = cell.platform.name
        if name not in manifests:
            try:
                manifests[name] = publisher.read_manifest(output, name)
            except BuilderError as exc:
                manifests[name] = None
                run.echo(f"[{name}] {_one_line(exc)}")
        manifest = manifests[name]
        entry = manifest.cells.get(cell.id) if manifest else None
        if manifest is None or entry is None or not entry.artifacts:
            why = f"not published in {output / name}: nothing to compare with (python -m builder all --cell {cell.id} publishes it)"
            run.rebuilt[cell.id] = Rebuilt("unchecked", why)
            continue
        if entry.input_key != run.keys.get(cell.id):
            run.rebuilt[cell.id] = Rebuilt("unchecked", _other_inputs(run, cell, manifest.artifacts[entry.artifacts[0]]))
            continue
        changed = _unlike_manifest([output / name / a for a in entry.artifacts], manifest.artifacts, sha256_file)
        if changed:
            run.rebuilt[cell.id] = Rebuilt("unchecked", f"{changed}: `python -m builder verify` names what else changed")
            continue
        todo.append(cell)
    echo = run.echo if run.verbose else None
    folders = {c.id: rebuild_folder(run.matrix) / c.platform.name / canonicalize_name(c.package.name) for c in todo}

    def work(cell: Cell) -> StageResult:
        images = run.images[cell.platform.name]
        return cells.build(run.backend(cell), run.matrix, cell, images, run.sources, echo, base=folders[cell.id])

    _parallel(run, "build", todo, work)
    for cell in todo:
        built = run.results[cell.id]["build"]
        folder = folders[cell.id]
        if not built.ok:
            run.rebuilt[cell.id] = Rebuilt("unchecked", f"the rebuild failed: {built.reason} (log: {built.log})", folder=folder)
            continue
        manifest = manifests[cell.platform.name]
        assert manifest is not None
        made = {Path(a).name: Path(a) for a in built.artifacts}
        names = manifest.cells[cell.id].artifacts
        found = [compare(output / cell.platform.name / name, made.get(name), folder) for name in names]
        extra = sorted(set(made) - set(names))
        differs = [c for c in found if not c.identical]
        if differs or extra:
            reason = "; ".join([c.summary() for c in differs] + [f"the rebuild also made {n}" for n in extra])
            run.rebuilt[cell.id] = Rebuilt("differs", reason, found, folder)
        else:
            run.rebuilt[cell.id] = Rebuilt("identical", comparisons=found, folder=folder)


def _other_inputs(run: Run, cell: Cell, published: Any) -> str:
    """Why a cell's published input key is not the one the matrix gives now, as far as the
    manifest says (its images, builder's version, the source)."""
    images = run.images[cell.platform.name]
    now = {"the build image": images.build, "the runtime image": images.runtime, "builder's version": __version__,
           "the source": cell.spec.source.sha256}
    then = {"the build image": published.build_image, "the runtime image": published.runtime_image,
            "builder's version": published.builder_version, "the source": published.source_sha256}
    changed = [f"{what} ({then[what] or '?'} published, {value} now)" for what, value in now.items() if then[what] != value]
    what = ", ".join(changed) if changed else "its options, tools, dependencies or the in-guest build scripts"
    return (f"published from other inputs than the matrix gives now: {what}; a rebuild cannot be expected to match "
            f"(python -m builder all --cell {cell.id} publishes it from the current ones)")


STAGES = (unavailable, fetch, images, rebuild)

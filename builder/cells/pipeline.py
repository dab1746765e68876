"""`all` as a pipeline of plain stage functions: fetch → images → build → test → publish.

Each stage takes the Run and records a StageResult per cell; a failed cell is left out of later
stages, never stopping the others (unless --fail-fast).
"""
from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeVar

from .. import __version__
from ..errors import BuilderError, FetchError, ImageError
from ..fetch import Fetcher
from ..machines.base import Backend, Images
from ..matrix import plan
from ..matrix.model import Engine, Matrix, Pin, Platform
from ..matrix.plan import Cell
from . import cell as cells
from . import fingerprint as taken
from . import state
from .provenance import provenance_of
from .state import Rebuilt, StageResult

Echo = Callable[[str], None]


@dataclass
class Run:
    matrix: Matrix
    cells: list[Cell]
    jobs: int = 1
    fail_fast: bool = False
    echo: Echo = print
    verbose: bool = False
    images: dict[str, Images] = field(default_factory=dict)
    sources: dict[str, Path] = field(default_factory=dict)
    results: dict[str, dict[str, StageResult]] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    force: bool = False
    done: set[str] = field(default_factory=set)  # cells already complete (published, unchanged)
    running: dict[str, tuple[str, float]] = field(default_factory=dict)  # cell id -> (stage, start)
    blocked: dict[str, ImageError] = field(default_factory=dict)  # platform -> why it cannot run here
    # The run's backends by name, made once by the caller (the command line) and shared by all.
    backends: Mapping[str, Backend] = field(default_factory=dict)
    # False for `verify --rebuild`: its stages leave the cells' saved state (what `test` and
    # `publish` take up) as the last real run left it.
    save_state: bool = True
    rebuilt: dict[str, Rebuilt] = field(default_factory=dict)  # verify --rebuild: cell id -> outcome

    def backend(self, cell: Cell) -> Backend:
        return self.backends[cell.platform.backend]

    def record(self, cell: Cell, result: StageResult) -> None:
        self.results.setdefault(cell.id, {})[result.stage] = result
        if self.save_state:
            state.save(self.matrix.settings.folders, cell, result)
        line = f"[{cell.id}] {result.stage}: {result.status}"
        if result.duration:
            line += f" ({result.duration:.1f} s)"
        if not result.ok and result.reason:
            line += f" — {result.reason}"
        self.echo(line)

    def failed(self, cell: Cell) -> bool:
        return any(not r.ok for r in self.results.get(cell.id, {}).values())

    def stopping(self) -> bool:
        return self.fail_fast and any(self.failed(c) for c in self.cells)

    def live(self) -> list[Cell]:
        return [c for c in self.cells if not self.failed(c) and c.id not in self.done]

    def last(self, cell: Cell) -> StageResult | None:
        stages = self.results.get(cell.id, {})
        return list(stages.values())[-1] if stages else None


def pins_of(cell: Cell) -> list[Pin]:
    spec = cell.spec
    interpreter = cell.platform.interpreter.pins if cell.platform.interpreter else ()
    return [spec.source, *spec.build_requires, *cell.platform.tools, *cell.platform.context, *interpreter]


def preflight(matrix: Matrix, selected: Sequence[Cell], backends: Mapping[str, Backend]) -> dict[str, ImageError]:
    """Platforms whose machines cannot be made here (base image or box missing), and why.

    Asked of each backend before anything is fetched, so a missing base stops its platform at
    once with the one thing to do, not at the first download that needed it.
    """
    blocked: dict[str, ImageError] = {}
    for platform in dict.fromkeys(c.platform for c in selected):
        try:
            backends[platform.backend].check(matrix, platform)
        except ImageError as exc:
            blocked[platform.name] = exc
    return blocked


def refuse_if_blocked(blocked: dict[str, ImageError], selected: Sequence[Cell]) -> None:
    """When no selected platform can run here, stop with their reasons: nothing would run."""
    if not blocked or any(c.platform.name not in blocked for c in selected):
        return
    if len(blocked) == 1:
        raise next(iter(blocked.values()))
    raise ImageError(
        "no selected platform can run on this machine:\n" + "\n".join(f"  {name}: {exc}" for name, exc in blocked.items())
    )


def unavailable(run: Run) -> None:
    """The cells of blocked platforms fail at `images`, one line each; the others go on."""
    for cell in run.live():
        exc = run.blocked.get(cell.platform.name)
        if exc is not None:
            run.record(cell, StageResult(cell.id, "images", "failed", reason=_one_line(exc)))


def fetch(run: Run) -> None:
    fetcher = Fetcher(run.matrix.settings.cache, run.matrix.settings.index_url, warn=run.echo, matrix_file=run.matrix.label)
    errors: dict[str, FetchError] = {}

    def one(pin: Pin) -> None:
        try:
            run.sources[pin.sha256] = fetcher.fetch(pin)
        except FetchError as exc:
            errors[pin.sha256] = exc

    unique = {p.sha256: p for c in run.live() for p in pins_of(c)}
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(one, unique.values()))
    for cell in run.live():
        bad = [errors[p.sha256] for p in pins_of(cell) if p.sha256 in errors]
        if bad:
            run.record(cell, StageResult(cell.id, "fetch", "failed", reason=_one_line(bad[0])))


def images(run: Run) -> None:
    for name in dict.fromkeys(c.platform.backend for c in run.live()):
        platforms = list(dict.fromkeys(c.platform for c in run.live() if c.platform.backend == name))
        for left in run.backends[name].leftovers(platforms):  # what a killed run left behind
            run.echo(f"removed leftover container {left}")
    # Each engine makes its own platforms' images, the engines side by side.
    groups = _by_engine(list(dict.fromkeys(c.platform for c in run.live())), lambda p: p.engine)
    _side_by_side([functools.partial(_prepare_all, run, platforms) for platforms in groups])
    _compute_keys(run)


def _prepare_all(run: Run, platforms: Sequence[Platform]) -> None:
    for platform in platforms:
        if run.stopping():
            return
        _prepare(run, platform)


def _prepare(run: Run, platform: Platform) -> None:
    started = time.monotonic()
    # The platform's log: what making its images said, and on a failure the build's tail.
    log_path = run.matrix.settings.work / "images" / f"{platform.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:

        def echo(line: str, log: TextIO = log) -> None:
            log.write(line + "\n")
            log.flush()
            run.echo(line)

        try:
            backend = run.backends[platform.backend]
            run.images[platform.name] = backend.prepare(run.matrix, platform, run.sources, echo)
        except ImageError as exc:
            log.write(f"{exc}\n")
            if run.verbose:
                run.echo(str(exc))
            for cell in run.live():
                if cell.platform == platform:
                    run.record(cell, StageResult(cell.id, "images", "failed", reason=_one_line(exc), log=str(log_path)))
            return
    run.echo(f"[{platform.name}] images ready ({time.monotonic() - started:.1f} s)")


T = TypeVar("T")


def _by_engine(items: Sequence[T], engine_of: Callable[[T], Engine]) -> list[list[T]]:
    """`items` grouped by the Docker engine they run on, each group in the order given."""
    groups: dict[Engine, list[T]] = {}
    for item in items:
        groups.setdefault(engine_of(item), []).append(item)
    return list(groups.values())


def _side_by_side(works: Sequence[Callable[[], None]]) -> None:
    """Run `works` at the same time (one each), and raise the first one's error once all ended."""
    if len(works) <= 1:
        for work in works:
            work()
        return
    with ThreadPoolExecutor(max_workers=len(works)) as pool:
        futures = [pool.submit(work) for work in works]
    for future in futures:
        future.result()


def _compute_keys(run: Run) -> None:
    digest = cells.guest_digest()
    needs = plan.Dependencies(run.cells)
    for cell in plan.dependency_order(run.cells):
        found = run.images.get(cell.platform.name)
        if found is None:
            continue
        own = plan.input_key(
            cell, build_image=found.build, runtime_image=found.runtime, guest_digest=digest, builder_version=__version__
        )
        dep_keys = sorted(run.keys.get(d.id, "") for d in needs.of(cell))
        run.keys[cell.id] = own if not dep_keys else hashlib.sha256((own + "".join(dep_keys)).encode()).hexdigest()


def up_to_date(run: Run) -> None:
    """Skip cells whose inputs match what is published: no container starts for them.

    The input key covers the source, tools, options, images and in-guest scripts, so equal keys
    mean the published artifacts are what a rebuild would test and publish. --force rebuilds.
    """
    from ..fetch import sha256_file
    from ..output import publish as publisher

    if run.force:
        return
    output = run.matrix.settings.output
    manifests = {}
    for cell in run.live():
        name = cell.platform.name
        if name not in manifests:
            try:
                manifests[name] = publisher.read_manifest(output, name)
            except BuilderError as exc:
                manifests[name] = None  # unreadable: rebuild, and publish will say why
                run.echo(f"[{name}] {_one_line(exc)}: its cells are rebuilt")
        manifest = manifests[name]
        entry = manifest.cells.get(cell.id) if manifest else None
        if manifest is None or entry is None or entry.input_key != run.keys.get(cell.id):
            continue
        files = [output / name / a for a in entry.artifacts]
        changed = _unlike_manifest(files, manifest.artifacts, sha256_file)
        if changed:
            # Someone changed the output folder under us: say so, never mend it silently.
            run.echo(f"[{cell.id}] {changed}; rebuilding")
            continue
        run.done.add(cell.id)
        result = StageResult(cell.id, "publish", "passed", artifacts=[str(f) for f in files],
                             input_key=entry.input_key, details={"up_to_date": True})
        run.results.setdefault(cell.id, {})["publish"] = result
        run.echo(f"[{cell.id}] up to date: published with the same inputs")


def _unlike_manifest(files: Sequence[Path], listed: Mapping[str, Any], sha256: Callable[[Path], str]) -> str:
    """How the first of a cell's published `files` differs from its manifest entry, or ""."""
    for path in files:
        if not path.is_file():
            return f"{path} is listed in the manifest but missing: removed since it was published"
        entry = listed.get(path.name)
        if entry is None or path.stat().st_size != entry.size or sha256(path) != entry.sha256:
            return f"{path} no longer matches the manifest (size or sha256): changed since it was published"
    return ""


def _parallel(run: Run, stage: state.Stage, todo: Sequence[Cell], work: Callable[[Cell], StageResult]) -> None:
    """Run `work` for each cell of `todo`, -j at a time on each Docker engine: the cells of
    platforms on different engines run side by side, each engine with its own -j slots."""

    def one(cell: Cell) -> None:
        if run.stopping():
            run.record(cell, StageResult(cell.id, stage, "skipped", reason="skipped after a failure (--fail-fast)"))
            return
        run.running[cell.id] = (stage, time.monotonic())
        try:
            result = work(cell)
        finally:
            run.running.pop(cell.id, None)
        result.input_key = run.keys.get(cell.id, "")
        run.record(cell, result)

    def slots(cells: Sequence[Cell]) -> None:
        with ThreadPoolExecutor(max_workers=max(1, run.jobs)) as pool:
            list(pool.map(one, cells))

    _side_by_side([functools.partial(slots, cells) for cells in _by_engine(todo, _engine_of)])


def _engine_of(cell: Cell) -> Engine:
    return cell.platform.engine


def _prestart_tests(run: Run, todo: Sequence[Cell]) -> None:
    """Have the backends start the test guests of `todo` now, where they can (docker), so that
    each start overlaps work still running instead of coming after it. Each is the fresh guest
    of that one cell's test; one whose test does not come is stopped when the run ends."""
    for cell in todo:
        start = getattr(run.backend(cell), "prestart", None)
        images = run.images.get(cell.platform.name)
        if start is not None and images is not None:
            start(cell.platform, images, "runtime", cell.platform.limits, cell.id)


def build(run: Run) -> None:
    echo = run.echo if run.verbose else None
    todo = run.live()
    # The cells tested first (-j of the first wave on each engine), started while the last cell
    # of their engine builds.
    first_wave = (_waves(todo, plan.Dependencies(run.cells)) or [[]])[0]
    first_tests = {id(group[-1]): [c for c in first_wave if c.platform.engine == group[-1].platform.engine][: max(1, run.jobs)]
                   for group in _by_engine(todo, _engine_of)}

    def work(cell: Cell) -> StageResult:
        if id(cell) in first_tests:
            _prestart_tests(run, first_tests[id(cell)])
        return cells.build(run.backend(cell), run.matrix, cell, run.images[cell.platform.name], run.sources, echo)

    _parallel(run, "build", todo, work)


def test(run: Run) -> None:
    echo = run.echo if run.verbose else None
    todo = run.live()
    for cell in todo:  # `builder test` alone: take the builds a previous run left
        if "build" not in run.results.get(cell.id, {}):
            try:
                saved = state.load(run.matrix.settings.folders, cell, "build")
            except state.CorruptState as exc:
                run.record(cell, StageResult(cell.id, "test", "failed", reason=_one_line(exc)))
                continue
            if saved is None or saved.input_key != run.keys.get(cell.id):
                reason = "no build of this cell with the current inputs: run `python -m builder build` first"
                run.record(cell, StageResult(cell.id, "test", "failed", reason=reason))
            else:
                run.results.setdefault(cell.id, {})["build"] = saved

    needs = plan.Dependencies(run.cells)

    def work(cell: Cell, following: Mapping[str, Cell]) -> StageResult:
        # The guest of the cell that will take this worker's place next (on its engine) is
        # started meanwhile.
        _prestart_tests(run, [following[cell.id]] if cell.id in following else [])
        deps = {d.id: _build_of(run, d) for d in needs.of(cell)}
        built = run.results[cell.id]["build"]
        return cells.test(run.backend(cell), run.matrix, cell, run.images[cell.platform.name], built, deps, run.sources, echo)

    # A cell is tested against its dependencies only once they passed their own test (or are
    # published, unchanged): so the cells are tested in waves, dependencies first.
    for wave in _waves(run.live(), needs):
        todo = []
        for cell in wave:
            why = _unpassed(run, needs.of(cell))
            if why:
                run.record(cell, StageResult(cell.id, "test", "failed", reason=why, input_key=run.keys.get(cell.id, "")))
            else:
                todo.append(cell)
        jobs = max(1, run.jobs)
        following = {c.id: group[n + jobs] for group in _by_engine(todo, _engine_of)
                     for n, c in enumerate(group) if n + jobs < len(group)}
        _parallel(run, "test", todo, functools.partial(work, following=following))


def _waves(todo: Sequence[Cell], needs: plan.Dependencies) -> list[list[Cell]]:
    """`todo` in groups: each cell in a later group than every cell of `todo` it needs."""
    ids = {c.id for c in todo}
    within = {c.id: [d.id for d in needs.of(c) if d.id in ids] for c in todo}
    depth: dict[str, int] = {}
    # needs.of is transitive: a cell needs strictly more of `todo` than any cell it needs, so in
    # that order every dependency's depth is known before its dependents'.
    for cell in sorted(todo, key=lambda c: len(within[c.id])):
        depth[cell.id] = 1 + max([depth[d] for d in within[cell.id]], default=-1)
    waves: dict[int, list[Cell]] = {}
    for cell in todo:
        waves.setdefault(depth[cell.id], []).append(cell)
    return [waves[n] for n in sorted(waves)]


def _unpassed(run: Run, deps: Sequence[Cell], chosen: Sequence[str] | None = None) -> str:
    """Why a cell must not be tested against (or, with `chosen`, published with) `deps`: the first
    of them that neither passed its test in this run (for publishing: is published in it) nor is
    published with its current inputs; "" if none."""
    for dep in deps:
        if dep.id in run.done:
            continue
        stages = run.results.get(dep.id, {})
        bad = next((r for r in stages.values() if not r.ok), None)
        if bad is not None:
            return f"needs {dep.id}, which failed at {bad.stage}" + (f": {bad.reason}" if bad.reason else "")
        if chosen is None and "test" not in stages:
            return f"needs {dep.id}, which was not tested in this run"
        if chosen is not None and dep.id not in chosen:
            return f"needs {dep.id}, which did not pass its test with the current inputs"
    return ""


def _build_of(run: Run, cell: Cell) -> StageResult:
    if cell.id in run.done:  # published and unchanged: its published files, verified by up_to_date
        done = run.results[cell.id]["publish"]
        return StageResult(cell.id, "build", "passed", artifacts=list(done.artifacts), input_key=done.input_key)
    try:
        found = run.results.get(cell.id, {}).get("build") or state.load(run.matrix.settings.folders, cell, "build")
    except state.CorruptState as exc:
        return StageResult(cell.id, "build", "failed", reason=_one_line(exc))
    return found or StageResult(cell.id, "build", "failed", reason="not built")


def publish(run: Run) -> None:
    from ..output import publish as publisher
    from ..output import signing

    passing: dict[str, list[publisher.PublishRecord]] = {}
    needs = plan.Dependencies(run.cells)
    chosen: list[str] = []
    for cell in plan.dependency_order(run.cells):
        if cell.id in run.done:
            continue
        try:
            tested = run.results.get(cell.id, {}).get("test") or state.load(run.matrix.settings.folders, cell, "test")
        except state.CorruptState as exc:
            run.record(cell, StageResult(cell.id, "publish", "failed", reason=_one_line(exc)))
            continue
        if tested is None or not tested.ok or run.failed(cell):
            continue
        if run.keys and tested.input_key != run.keys.get(cell.id):
            continue  # tested with other inputs than the matrix now says: never publish that
        # A server could not install it without its dependencies: publish it only with them.
        why = _unpassed(run, needs.of(cell), chosen)
        if why:
            run.record(cell, StageResult(cell.id, "publish", "failed", reason=f"not published: {why}",
                                         input_key=tested.input_key))
            continue
        chosen.append(cell.id)
        passing.setdefault(cell.platform.name, []).append(
            publisher.PublishRecord(
                cell_id=cell.id,
                package=cell.package.name,
                version=cell.spec.source.version,
                platform=cell.platform.name,
                artifacts=tuple(Path(a) for a in tested.artifacts),
                source_sha256=cell.spec.source.sha256,
                input_key=tested.input_key,
                build_image=tested.images.get("build", ""),
                runtime_image=tested.images.get("runtime", ""),
                builder_version=__version__,
                finished_at=tested.finished_at,
                runtime_packages=cell.system.runtime,  # what the runtime image was given for it
                family=cell.platform.family,
                provenance=provenance_of(run.matrix, cell, tested, _build_of(run, cell)),
            )
        )
    order = {c.id: n for n, c in enumerate(run.cells)}  # chosen in dependency order, published in the matrix's
    passing = {name: sorted(records, key=lambda r: order[r.cell_id]) for name, records in passing.items()}
    output = run.matrix.settings.output
    keys = signing.keys(run.matrix.settings, sign=True)  # read before anything is written
    output.mkdir(parents=True, exist_ok=True)
    by_id = {c.id: c for c in run.cells}
    with publisher.output_lock(output):
        # Finish (or undo) a publish a killed run left, even when this run has nothing new.
        for line in publisher.recover(output):
            run.echo(line)
        _publish_interpreters(run, output)
        for platform, records in passing.items():
            started = time.monotonic()
            try:
                # What the runtime image is, published with what was tested in it: deploy
                # compares each server with it (builder doctor).
                found = by_id[records[0].cell_id].platform
                fingerprint = taken.take(run.backends[found.backend], run.matrix, found, run.images[platform], run.echo)
            except BuilderError as exc:
                for record in records:
                    run.record(by_id[record.cell_id], StageResult(
                        record.cell_id, "publish", "failed", input_key=record.input_key,
                        reason=f"not published: the runtime image's fingerprint could not be taken: {_one_line(exc)}"))
                continue
            publisher.publish(output, platform, records, fingerprint=fingerprint, keys=keys)
            for record in records:
                cell = by_id[record.cell_id]
                result = StageResult(
                    cell.id, "publish", "passed", artifacts=[str(output / platform / a.name) for a in record.artifacts],
                    input_key=record.input_key, duration=time.monotonic() - started,
                )
                run.record(cell, result)


def _publish_interpreters(run: Run, output: Path) -> None:
    """The interpreter packages of the run's platforms go to output/<platform>/os/ once their
    images were made from them; published again only when their bytes changed."""
    from ..machines import ospackage
    from ..output import ospackages

    for name, found in run.images.items():
        if not found.packages:
            continue
        platform = run.matrix.platform(name)
        copied = ospackages.publish(output, name, found.packages, found.packages_about or {},
                                    names=ospackage.package_names(platform, found.packages),
                                    version=ospackage.package_version(platform))
        for path in copied:
            run.echo(f"[{name}] published {path.relative_to(output)}")


def _one_line(exc: BuilderError) -> str:
    return exc.message.splitlines()[0] + (f" ({exc.hint.splitlines()[0]})" if exc.hint else "")


STAGES: dict[str, tuple[Callable[[Run], None], ...]] = {
    "fetch": (fetch,),
    "images": (unavailable, fetch, images),
    "build": (unavailable, fetch, images, build),
    "test": (unavailable, fetch, images, test),
    "publish": (unavailable, fetch, images, publish),
    "all": (unavailable, fetch, images, up_to_date, build, test, publish),
}


def execute(run: Run, stages: Sequence[Callable[[Run], None]]) -> Run:
    try:
        for stage in stages:
            if (not run.live() and stage is not publish) or run.stopping():
                break
            stage(run)
    finally:
        for backend in list(run.backends.values()):
            release = getattr(backend, "release", None)
            if release is not None:
                release()  # guests started ahead for tests that did not come
    return run

"""`add NAME`: find the release, its pins and its OS packages per platform, prove them by building
and testing exactly as a cell does, then publish and write the entry into matrix.yaml."""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from ruamel.yaml.comments import CommentedMap

from ..cells import pipeline
from ..cells.state import cell_dir
from ..errors import BuilderError
from ..fetch import Fetcher, default_index_url
from ..machines import provides
from ..machines.base import Backend, Images
from ..matrix import load as config
from ..matrix import plan
from ..matrix.model import Matrix, Pin, Platform
from . import elf, resolve, sdist, words
from . import entry as entries
from .resolve import AddError, Release

Echo = Callable[[str], None]
ROUNDS = 4  # probe builds per add before it gives up, with the evidence
# Build tools every build guest already has (the image's or the virtualenv's).
GIVEN = {"setuptools", "wheel", "pip", "distribute"}


@dataclass
class Target:
    """One platform add works on: its images, its Python and its look-ups."""

    platform: Platform
    python: str = ""  # 3.11.2
    setuptools: str | None = None  # the build image's own, if its Python has one
    build_image: str = ""
    runtime_image: str = ""

    @property
    def short(self) -> str:
        return ".".join(self.python.split(".")[:2])


@dataclass
class PerPlatform:
    release: Release
    why: str
    facts: sdist.Facts
    build_requires: list[resolve.Wheel] = field(default_factory=list)
    build: list[str] = field(default_factory=list)  # OS packages to build
    runtime: list[str] = field(default_factory=list)
    extensions: list[str] = field(default_factory=list)
    skip: dict[str, str] = field(default_factory=dict)  # module -> the error
    evidence: list[str] = field(default_factory=list)


@dataclass
class Derived:
    name: str  # as the index spells it
    per: dict[str, PerPlatform] = field(default_factory=dict)
    depends: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _pick_platforms(matrix: Matrix, globs: Sequence[str], echo: Echo) -> list[Platform]:
    if globs:
        chosen = [p for p in matrix.platforms if any(fnmatch(p.name, g) for g in globs)]
        if not chosen:
            raise AddError(f"--platform {','.join(globs)} matches no platform of {matrix.path.name}",
                           hint="declared: " + ", ".join(p.name for p in matrix.platforms))
    else:
        chosen = [p for p in matrix.platforms if p.enabled]
    usable = [p for p in chosen if p.backend == "docker" and provides.supported(p)]
    for p in chosen:
        if p not in usable:
            echo(f"[{p.name}] left out: {provides.unsupported(p)}")
    if not usable:
        raise AddError("no selected platform can be probed here",
                       hint="name a docker platform of the Debian or Red Hat family with --platform")
    return usable


def _targets(matrix: Matrix, platforms: Sequence[Platform], backends: Mapping[str, Backend], echo: Echo) -> list[Target]:
    fetcher = Fetcher(matrix.settings.cache, matrix.settings.index_url, warn=echo)
    files = {pin.sha256: fetcher.fetch(pin) for p in platforms for pin in p.context}
    found = []
    for platform in platforms:
        images = backends[platform.backend].prepare(matrix, platform, files, echo)
        target = Target(platform, provides.python_version(images.build, platform.python, platform.engine),
                        provides.setuptools_version(images.build, platform.python, platform.engine),
                        images.build, images.runtime)
        echo(f"[{platform.name}] Python {target.python}" + (f", setuptools {target.setuptools}" if target.setuptools else ""))
        found.append(target)
    return found


def _declared(fetcher: Fetcher, name: str, python: str) -> Callable[[Release], bool | None]:
    def read(release: Release) -> bool | None:
        path = fetcher.fetch(Pin(name, release.text, str(release.sdist.sha256)))
        major, minor = (int(x) for x in python.split(".")[:2])
        return sdist.read(path).python_ok((major, minor))
    return read


def _requirement_names(requirements: Sequence[str], python: str, full: str) -> list[Requirement]:
    found = []
    for text in requirements:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        if resolve.marker_ok(req, python, full):
            found.append(req)
    return found


def derive_one(
    matrix: Matrix, fetcher: Fetcher, index_url: str, name: str, wanted: str | None, targets: Sequence[Target], echo: Echo
) -> Derived:
    candidates = resolve.releases(index_url, name)
    derived = Derived(name)  # spelled as asked (the command line, or the requirement that needs it)
    for target in targets:
        release, why = resolve.pick(candidates, target.short, wanted, _declared(fetcher, name, target.short))
        path = fetcher.fetch(Pin(name, release.text, str(release.sdist.sha256)))
        facts = sdist.read(path)
        one = PerPlatform(release, why, facts)
        echo(f"[{target.platform.name}] {derived.name} {release.text} ({why}); sdist {release.sdist.filename} "
             f"sha256 {release.sdist.sha256}")
        wanted_build: list[str] = list(facts.build_system or []) + facts.setup_requires
        if facts.pyx_without_c:
            declared = any(canonicalize_name(Requirement(r).name) == "cython" for r in wanted_build if _parses(r))
            if not declared:
                wanted_build.append("Cython")
            one.evidence.append(f"{', '.join(facts.pyx_without_c[:3])} ship(s) without generated C: Cython at build time"
                                + (" (the sdist declares it too)" if declared else " (the sdist does not declare it)"))
        if facts.setup_requires_dynamic:
            derived.notes.append("setup.py computes setup_requires at run time: not read (the probe build decides)")
        seen: set[str] = set()
        for req in _requirement_names(wanted_build, target.short, target.python):
            key = canonicalize_name(req.name)
            newer = key == "setuptools" and target.setuptools is not None and \
                not req.specifier.contains(target.setuptools, prereleases=True)
            if (key in GIVEN and not newer) or key in seen:
                continue
            if newer:
                one.evidence.append(f"the sdist needs {req}; the build image has setuptools {target.setuptools}: pinned")
            seen.add(key)
            wheel = resolve.build_wheel(index_url, str(req), target.short)
            one.build_requires.append(wheel)
            echo(f"[{target.platform.name}] build requirement {req} -> {wheel.filename}")
        derived.per[target.platform.name] = one
        for req in _requirement_names(facts.install_requires, target.short, target.python):
            if req.name not in derived.depends and not any(resolve.same_project(req.name, d) for d in derived.depends):
                derived.depends.append(req.name)
    return derived


def _parses(text: str) -> bool:
    try:
        Requirement(text)
    except InvalidRequirement:
        return False
    return True


# -- the entry --------------------------------------------------------------------------------


def _pins(wheels: Sequence[resolve.Wheel]) -> Any:
    return [entries.flow_map({"name": w.name, "version": w.version, "sha256": w.sha256}) for w in wheels]


def _same(values: Sequence[Any]) -> bool:
    return all(v == values[0] for v in values)


def build_entry(matrix: Matrix, derived: Derived, depends: Sequence[str]) -> CommentedMap:
    per = derived.per
    names = list(per)
    versions = [per[n].release.text for n in names]
    # The version most platforms take (the newest among equals) is the entry's; the others override it.
    main = max(set(versions), key=lambda v: (versions.count(v), per[names[versions.index(v)]].release.version))
    first = next(n for n in names if per[n].release.text == main)
    base = per[first]
    doc = CommentedMap()
    doc["name"] = derived.name
    doc["version"] = main
    doc["sha256"] = base.release.sdist.sha256
    every = [p.name for p in matrix.platforms]
    if sorted(names) != sorted(every):
        doc["platforms"] = entries.flow_list(names)
    pins = [[(w.name, w.version, w.sha256) for w in per[n].build_requires] for n in names]
    if base.build_requires:
        doc["build_requires"] = _pins(base.build_requires)
    switches = sorted({s for p in per.values() for s in p.facts.switches})
    envs = [per[n].facts.env for n in names]
    if base.facts.env:
        doc["env"] = entries.flow_map(dict(sorted(base.facts.env.items())))
        doc.yaml_add_eol_comment("setup.py's own switch: a failed compile is an error, not a silent pure-Python build", "env")
    exts = [sorted(per[n].extensions) for n in names]
    doc["extensions"] = entries.flow_list(sorted(base.extensions))
    if switches:
        doc.yaml_add_eol_comment("the sdist has a switch against a silent pure-Python build: " + "; ".join(switches),
                                 "extensions")
    skips = [sorted(per[n].skip) for n in names]
    if base.skip:
        doc["skip_imports"] = entries.flow_list(sorted(base.skip))
        doc.yaml_add_eol_comment("; ".join(f"{m}: {e}" for m, e in sorted(base.skip.items()))[:200], "skip_imports")
    families: dict[str, list[str]] = {}
    for n in names:
        families.setdefault(matrix.platform(n).family, []).append(n)
    system = CommentedMap()
    own_system: dict[str, tuple[list[str], list[str]]] = {}
    for family, members in families.items():
        lists = [(sorted(per[n].build), sorted(per[n].runtime)) for n in members]
        if not any(b or r for b, r in lists):
            continue
        if _same(lists) and len(members) == len([p for p in matrix.platforms if p.family == family and p.name in names]):
            system[family] = entries.flow_map({"build": entries.flow_list(lists[0][0]), "runtime": entries.flow_list(lists[0][1])})
        else:
            for n, lst in zip(members, lists, strict=True):
                own_system[n] = lst
    if system:
        doc["system"] = system
    if depends:
        doc["depends"] = entries.flow_list(list(depends))
    overrides = CommentedMap()
    for i, n in enumerate(names):
        one = CommentedMap()
        p = per[n]
        if p.release.text != main:
            one["version"] = p.release.text
            one["sha256"] = p.release.sdist.sha256
        if envs[i] != envs[names.index(first)]:
            one["env"] = entries.flow_map(dict(sorted(envs[i].items())))
        if pins[i] != pins[names.index(first)]:
            one["build_requires"] = _pins(p.build_requires)
        if exts[i] != exts[names.index(first)]:
            one["extensions"] = entries.flow_list(exts[i])
        if skips[i] != skips[names.index(first)]:
            one["skip_imports"] = entries.flow_list(skips[i])
            if p.skip:
                one.yaml_add_eol_comment("; ".join(f"{m}: {e}" for m, e in sorted(p.skip.items()))[:200], "skip_imports")
        if n in own_system:
            family = matrix.platform(n).family
            b, r = own_system[n]
            one["system"] = {family: entries.flow_map({"build": entries.flow_list(b), "runtime": entries.flow_list(r)})}
        if one:
            overrides[n] = one
    if overrides:
        doc["overrides"] = overrides
    return doc


# -- probing ----------------------------------------------------------------------------------


def _run(candidate: Matrix, cells: list[plan.Cell], backends: Mapping[str, Backend], stages: Sequence[Callable[[pipeline.Run], None]],
         echo: Echo, force: bool = True) -> pipeline.Run:
    run = pipeline.Run(candidate, cells, jobs=2, echo=echo, force=force, backends=backends)
    return pipeline.execute(run, stages)


def _candidate(text: str, path: Path, items: Sequence[CommentedMap], replace: Sequence[str]) -> tuple[str, Matrix]:
    new = text
    for item in items:
        name = str(item["name"])
        new = entries.splice(new, item, replace=name if name in replace else None)
    try:
        return new, config.loads(new, path, label=path.name)
    except BuilderError as exc:  # an entry builder made must load: this is builder's own bug
        raise AddError(f"the derived entry does not load: {exc.message}", hint=exc.hint) from exc


@dataclass
class Outcome:
    text: str
    old: str
    entries: list[CommentedMap]
    derived: list[Derived]
    timings: dict[str, float]
    published: bool


def add(
    matrix_path: Path, requirement: str, globs: Sequence[str], *, dry_run: bool, update: bool,
    backends: Mapping[str, Backend], echo: Echo,
) -> Outcome:
    started = time.monotonic()
    matrix = config.load(matrix_path)
    name, _, wanted = requirement.partition("==")
    name, wanted_version = name.strip(), (wanted.strip() or None)
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?", name):
        raise AddError(f"{requirement!r} is not NAME or NAME==VERSION")
    known = {canonicalize_name(p.name): p for p in matrix.packages}
    present = known.get(canonicalize_name(name))
    if present is not None and not update:
        raise AddError(f"{present.name} is already in {matrix_path} ({present.location})",
                       hint=f"python -m builder add {name} --update derives it again (new version, new pins)")
    platforms = _pick_platforms(matrix, globs, echo)
    index_url = matrix.settings.index_url or default_index_url()
    resolve.releases(index_url, name)  # an unknown or wheel-only project stops here, before any image is made
    fetcher = Fetcher(matrix.settings.cache, matrix.settings.index_url, warn=echo)
    targets = _targets(matrix, platforms, backends, echo)
    by_name = {t.platform.name: t for t in targets}
    # The package and what it needs at run time that the matrix lacks, dependencies first.
    order: list[Derived] = []
    todo = [(name, wanted_version)]
    planned: set[str] = set()
    while todo:
        current, version = todo.pop(0)
        key = canonicalize_name(current)
        if key in planned:
            continue
        planned.add(key)
        found = derive_one(matrix, fetcher, index_url, current, version, targets, echo)
        order.insert(0, found)
        for dep in found.depends:
            if canonicalize_name(dep) not in known or (update and canonicalize_name(dep) == canonicalize_name(name)):
                todo.append((dep, None))
    replace = [present.name] if present is not None else []
    text = matrix_path.read_text(encoding="utf-8")
    timings: dict[str, float] = {"resolve": time.monotonic() - started}

    def items() -> list[CommentedMap]:
        made = []
        for d in order:
            deps = [known[canonicalize_name(x)].name if canonicalize_name(x) in known else
                    next(o.name for o in order if canonicalize_name(o.name) == canonicalize_name(x)) for x in d.depends]
            made.append(build_entry(matrix, d, [x for x in deps if canonicalize_name(x) != canonicalize_name(d.name)]))
        return made

    new_names = [d.name for d in order]
    selection = [t.platform.name for t in targets]

    def cells_of(candidate: Matrix) -> list[plan.Cell]:
        return plan.select(candidate, selection, new_names, [])

    # Probe builds: read what a failed build lacked, look it up, add it, build again. A cell
    # whose probe passed is not probed again (what it learns is its own: its artifacts and the
    # build image it was built in are kept); the whole cell runs again below anyway.
    built: dict[str, tuple[plan.Cell, Sequence[str], Images]] = {}
    for round_no in range(1, ROUNDS + 1):
        probe_started = time.monotonic()
        _, candidate = _candidate(text, matrix.path, items(), replace)
        cells = [c for c in cells_of(candidate) if c.package.name in new_names and c.id not in built]
        echo(f"probe build {round_no}: {', '.join(c.id for c in cells)}")
        run = _run(candidate, cells, backends, (pipeline.unavailable, pipeline.fetch, pipeline.images, pipeline.build), echo)
        timings[f"probe {round_no}"] = time.monotonic() - probe_started
        failed = [c for c in cells if run.failed(c)]
        for cell in cells:
            if cell not in failed:
                built[cell.id] = (cell, run.results[cell.id]["build"].artifacts, run.images[cell.platform.name])
        if not failed:
            break
        progress = False
        for cell in failed:
            progress |= _learn(cell, run, next(d for d in order if d.name == cell.package.name), by_name[cell.platform.name], echo)
        if not progress:
            cell = failed[0]
            last = run.last(cell)
            raise AddError(f"{cell.id} failed at {last.stage if last else '?'}: {last.reason if last else ''}",
                           hint=f"see {last.log if last and last.log else 'the log'}; nothing was written")
    else:
        raise AddError(f"the probe builds still failed after {ROUNDS} rounds", hint="see the build logs; nothing was written")
    # What the artifacts need at run time, and what they compile.
    for cell, artifacts, images in built.values():
        one = next(d for d in order if d.name == cell.package.name).per[cell.platform.name]
        _runtime(cell, artifacts, images, one, echo)
    # The whole cell, as `all` runs it: build, test (and publish unless --dry-run).
    for attempt in (1, 2, 3):
        final_started = time.monotonic()
        new_text, candidate = _candidate(text, matrix.path, items(), replace)
        cells = cells_of(candidate)
        echo(f"build and test as a cell: {', '.join(c.id for c in cells if c.package.name in new_names)}")
        # Dependencies already published with their inputs are not rebuilt (up_to_date); the new cells are.
        stages = (pipeline.unavailable, pipeline.fetch, pipeline.images, pipeline.up_to_date, pipeline.build, pipeline.test)
        run = _run(candidate, cells, backends, stages, echo, force=False)
        timings[f"cell {attempt}"] = time.monotonic() - final_started
        failed = [c for c in cells if run.failed(c)]
        if not failed:
            break
        # Every failed cell is read (no short cut): each may propose its own skips.
        proposed = [_skips(c, run, next(d for d in order if d.name == c.package.name), echo)
                    for c in failed if c.package.name in new_names]
        if attempt == 3 or not any(proposed):
            cell = failed[0]
            last = run.last(cell)
            raise AddError(f"{cell.id} failed at {last.stage if last else '?'}: {last.reason if last else ''}",
                           hint=f"see {last.log if last and last.log else 'the log'}; nothing was written or published")
    published = False
    if not dry_run:
        publish_started = time.monotonic()
        pipeline.publish(run)
        timings["publish"] = time.monotonic() - publish_started
        bad = [c for c in cells if "publish" not in run.results.get(c.id, {}) or not run.results[c.id]["publish"].ok]
        if bad:
            raise AddError(f"publishing {', '.join(c.id for c in bad)} failed", hint="matrix.yaml was not changed")
        published = True
        entries.write_atomically(matrix_path, new_text)
    timings["total"] = time.monotonic() - started
    return Outcome(new_text, text, items(), order, timings, published)


def _learn(cell: plan.Cell, run: pipeline.Run, derived: Derived, target: Target, echo: Echo) -> bool:
    """From a failed probe build: the OS packages it lacked, looked up and added. False: nothing to learn."""
    last = run.last(cell)
    if last is None or last.stage != "build" or not last.log or not Path(last.log).is_file():
        return False
    lacks = words.missing(Path(last.log).read_text(encoding="utf-8", errors="replace"))
    if not lacks:
        return False
    one = derived.per[cell.platform.name]
    family = target.platform.family
    direct = {m: provides.compiler_package(target.platform, m.name) for m in lacks if m.kind == "compiler"}
    search = {str(m): m.query(family) for m in lacks if m.kind != "compiler"}
    found = provides.search(target.platform, search, echo, run.matrix.settings.registry_mirror)
    index = "yum's file lists" if family == "redhat" else "Contents index"
    learned = False
    unknown = []
    for m in lacks:
        package = direct.get(m) or provides.best(found.get(str(m), []), prefer_dev=True, family=family)
        if package is None:
            asked = " ".join(search[str(m)].globs) if family == "redhat" else m.pattern
            unknown.append(f"{m} ({m.evidence}; searched {target.platform.name}'s {index} for {asked})")
            continue
        if package in one.build:
            continue
        paths = ", ".join(sorted({f.path for f in found.get(str(m), []) if f.package == package})[:2])
        note = f"{m} ({m.evidence}) -> {package}" + (f" ({paths})" if paths else "")
        echo(f"[{cell.id}] {note}")
        one.evidence.append(note)
        one.build.append(package)
        learned = True
    if unknown and not learned:
        raise AddError(f"{cell.id}: no package of {target.platform.name} provides " + "; ".join(unknown),
                       hint="install it by hand in the platform's image, or this package cannot be built there; nothing was written")
    return learned


def _runtime(cell: plan.Cell, artifacts: Sequence[str], images: Images, one: PerPlatform, echo: Echo) -> None:
    """The compiled modules, and the OS packages their DT_NEEDED sonames come from (asked of
    the build image the probe built in) that the runtime image lacks."""
    sonames: set[str] = set()
    modules: set[str] = set()
    for artifact in artifacts:
        for member, data in elf.so_members(Path(artifact)).items():
            modules.add(elf.module_of(member))
            sonames.update(elf.needed(data))
    one.extensions = sorted(modules)
    if not modules and one.facts.compiled_sources:
        echo(f"[{cell.id}] warning: the sdist has {', '.join(one.facts.compiled_sources[:3])} but the build made no compiled "
             "module: a silent pure-Python fallback? extensions: [] is written; check the build log")
    owners = provides.owners(images.build, sonames, cell.platform.engine, cell.platform.family)
    runtime_has = provides.installed(images.runtime, cell.platform.engine, cell.platform.family)
    packages = sorted({pkg for _, pkg in owners.values() if pkg and pkg not in runtime_has})
    unowned = sorted(s for s, (_, pkg) in owners.items() if not pkg)
    one.runtime = packages
    echo(f"[{cell.id}] compiled modules: {', '.join(one.extensions) or 'none'}; DT_NEEDED: {', '.join(sorted(sonames)) or 'none'}; "
         f"run-time packages the runtime image lacks: {', '.join(packages) or 'none'}")
    if unowned:
        echo(f"[{cell.id}] no installed package owns {', '.join(unowned)}")


def _skips(cell: plan.Cell, run: pipeline.Run, derived: Derived, echo: Echo) -> bool:
    """Modules that failed to import for a reason that is the platform's: proposed for skip_imports."""
    import json

    folder = cell_dir(run.matrix.settings.folders, cell) / "test"
    one = derived.per[cell.platform.name]
    found = False
    for result in folder.glob("*/check-result.json"):
        report = json.loads(result.read_text(encoding="utf-8"))
        failures = report.get("import_failures") or {}
        for module, error in failures.items():
            line = " ".join(str(error).split())[-160:]
            if not words.proposable(module, str(error)):
                return False
            if module not in one.skip:
                one.skip[module] = line
                echo(f"[{cell.id}] import {module} fails on this platform ({line}): proposed for skip_imports")
                found = True
    return found


def summary(outcome: Outcome) -> list[str]:
    """What was derived and why, per package and platform; the egg support; the time it took."""
    lines = []
    for d in outcome.derived:
        for platform, one in d.per.items():
            lines.append(f"{d.name} on {platform}: {one.release.text} ({one.why}), sdist sha256 {one.release.sdist.sha256}")
            for note in one.evidence:
                lines.append(f"  evidence: {note}")
            if one.build_requires:
                lines.append("  build_requires: " + ", ".join(f"{w.filename} ({w.sha256[:12]}…)" for w in one.build_requires))
            lines.append(f"  system build: {', '.join(one.build) or 'none'}; runtime: {', '.join(one.runtime) or 'none'}")
            lines.append(f"  extensions: {', '.join(one.extensions) or 'none (a pure package)'}")
            for module, error in sorted(one.skip.items()):
                lines.append(f"  skip_imports {module}: {error}")
            lines.append("  egg: " + sdist.egg_support(one.facts))
        for note in d.notes:
            lines.append(f"  note: {note}")
    lines.append("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in outcome.timings.items()))
    return lines

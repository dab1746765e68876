"""`check-imports`: does an application import on a platform, with what builder published for it?

All in one runtime guest of the platform (the production image: no compiler, no network):
1. guest/imports.py `scan`, run by the platform's Python over a read-only copy of the
   application's modules: every import statement, parsed by the target's own interpreter;
2. guest/appenv.py: a fresh environment with the chosen published artifacts, verified against
   the manifest, installed offline exactly as the test stage installs them (check.py's code);
3. guest/imports.py `try`, run by that environment's python, of every import the application
   does not provide itself.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from packaging.requirements import Requirement

from ..cells import contract
from ..cells.cell import GUEST_DIR, _Log, _tool
from ..cells.contract import AppEnvSpec
from ..cells.state import fresh_dir
from ..errors import BuilderError, ImportsFailed, SelectionError
from ..fetch import Fetcher
from ..machines.base import GUEST_ROOT, GUEST_WORK, Backend, Machine
from ..matrix.model import Format, Matrix, Platform
from ..output import published

Echo = Callable[[str], None]
GUEST_ENV = {"HOME": f"{GUEST_WORK}/home", "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
APP_SUFFIXES = (".py", ".so", ".pyd")  # all the scanner reads of a tree
SKIP_DIRS = ("__pycache__", "node_modules")
OWN_CODE = "the application's own code"
NOBODY = "no published artifact provides it"


@dataclass(frozen=True)
class Failure:
    where: str  # file:line
    statement: str  # the import as written, or "" for a file that does not parse
    error: str
    provider: str  # which published artifact was expected to provide it, or NOBODY


@dataclass(frozen=True)
class Report:
    app: str
    platform: str
    python: str
    files: int
    tried: int  # import statements tried (not the application's own)
    own: int
    installed: tuple[str, ...]  # artifact file names
    failures: tuple[Failure, ...]
    optional: tuple[Failure, ...]  # imports guarded by except ImportError or a version test
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failures


def platform_of(matrix: Matrix, name: str) -> Platform:
    for platform in matrix.platforms:
        if platform.name == name:
            return platform
    known = ", ".join(p.name for p in matrix.platforms)
    raise SelectionError(f"no platform {name!r} in {matrix.label}", hint=f"the matrix declares: {known}")


def check(
    matrix: Matrix,
    app: Path,
    platform_name: str,
    requirements: Path | None = None,
    fmt: Format = "egg",
    echo: Echo = print,
    log_echo: Echo | None = None,
    excludes: Sequence[str] = (),
    *,
    backends: Mapping[str, Backend],
) -> Report:
    """Check every import of the application tree `app` on the platform; raise NotPublished
    when a requirement has no published artifact. The Report says which imports fail."""
    platform = platform_of(matrix, platform_name)
    if not app.is_dir():
        raise BuilderError(f"{app} is not a folder", hint="give the application's source tree")
    reqs = published.parse_requirements(requirements) if requirements else []
    artifacts = published.load(matrix, platform.name)  # every file hashed against the manifest
    published.precheck(matrix, platform.name, artifacts, reqs)
    sources = _platform_files(matrix, platform)
    backend = backends[platform.backend]
    images = backend.prepare(matrix, platform, sources, echo)
    work = fresh_dir(matrix.settings.work / "check-imports" / platform.name / _safe(app.resolve().name))
    log = _Log(work / "check-imports.log", log_echo)
    try:
        with backend.machine(
            platform, images, "runtime", platform.limits, f"check-imports/{platform.name}"
        ) as machine:
            report = _in_guest(matrix, platform, machine, app.resolve(), reqs, artifacts, sources, fmt, work, log,
                               echo, excludes)
        report = replace(report, notes=_stale(report, artifacts, images.runtime))
    finally:
        log.close()
    (work / "report.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report


def _stale(report: Report, artifacts: Sequence[published.Artifact], runtime: str) -> tuple[str, ...]:
    """The installed artifacts were tested in another runtime image than the platform's current
    one (its Dockerfile or system packages changed since): the check may not hold for it."""
    old = sorted(a.filename for a in artifacts
                 if a.filename in report.installed and a.runtime_image and a.runtime_image != runtime)
    if not old:
        return ()
    return (f"{', '.join(old)} were tested in an older runtime image of {report.platform} than today's: "
            f"republish them (python -m builder all --platform {report.platform}) before trusting this check",)


def _platform_files(matrix: Matrix, platform: Platform) -> dict[str, Path]:
    """The platform's verified tools (virtualenv, pip) and image context files, nothing else."""
    fetcher = Fetcher(matrix.settings.cache, matrix.settings.index_url, matrix_file=matrix.label)
    return {pin.sha256: fetcher.fetch(pin) for pin in (*platform.tools, *platform.context)}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "app"


def stage_app(app: Path, dest: Path) -> int:
    """Copy the modules of the tree (what the scanner reads) where the guest gets them."""
    count = 0
    for folder, dirs, files in os.walk(app):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS]
        for name in files:
            if name.endswith(APP_SUFFIXES):
                source = Path(folder) / name
                target = dest / source.relative_to(app)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
                count += 1
    dest.mkdir(parents=True, exist_ok=True)
    return count


def _run(machine: Machine, argv: list[str], platform: Platform, log: _Log, ok: Sequence[int]) -> None:
    result = machine.run(argv, env=GUEST_ENV, timeout=platform.limits.timeout, log=log)
    if result.timed_out:
        raise BuilderError(f"{argv[1]} stopped after {platform.limits.timeout} s (limits.timeout)", hint=f"see {log.handle.name}")
    if result.returncode not in ok:
        tail = "\n".join(result.output.rstrip().splitlines()[-5:])
        raise BuilderError(f"{' '.join(argv[:3])} failed in the {platform.name} runtime guest "
                           f"(exit {result.returncode}):\n{tail}", hint=f"the whole output is in {log.handle.name}")


def _result(path: Path, log: _Log) -> dict:
    """A guest script's JSON result; its absence means the script itself failed."""
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise BuilderError(f"the guest left no readable {path.name} ({exc.__class__.__name__})",
                           hint=f"the guest's output is in {log.handle.name}") from exc


def _in_guest(
    matrix: Matrix,
    platform: Platform,
    machine: Machine,
    app: Path,
    reqs: Sequence[tuple[str, Requirement]],
    artifacts: Sequence[published.Artifact],
    sources: dict[str, Path],
    fmt: Format,
    work: Path,
    log: _Log,
    echo: Echo,
    excludes: Sequence[str],
) -> Report:
    app_dir = f"{GUEST_ROOT}/app/{_safe(app.name)}"
    stage = fresh_dir(work / "stage")
    shutil.copytree(GUEST_DIR, stage / "guest", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    count = stage_app(app, stage / "app" / _safe(app.name))
    machine.copy_in(stage, GUEST_ROOT)
    shutil.rmtree(stage)
    machine.mkdir(f"{GUEST_ROOT}/out")
    echo(f"scanning {count} file(s) of {app} with {platform.python} in the {platform.name} runtime image")
    argv = [platform.python, f"{GUEST_ROOT}/guest/imports.py", "scan", app_dir, "--out", f"{GUEST_ROOT}/out/scan.json"]
    for pattern in excludes:
        argv += ["--exclude", pattern]
    _run(machine, argv, platform, log, ok=(0, 1))
    machine.copy_out(f"{GUEST_ROOT}/out", work / "out")
    scan = _result(work / "out" / "scan.json", log)
    python = scan["python"]

    chosen = (published.resolve(matrix, platform.name, artifacts, reqs, fmt, python) if reqs
              else published.newest(artifacts, fmt, python))
    specs = list(dict.fromkeys(e["spec"] for e in scan["imports"] + scan["optional"]))
    env_stage = fresh_dir(work / "stage-env")
    for artifact in chosen:
        published.copy_verified(artifact, env_stage / "artifacts" / artifact.filename)
    tools: dict[str, str | None] = {}
    for name in ("virtualenv", "pip"):
        path = _tool(platform.tools, sources, name)
        if path:
            shutil.copyfile(path, env_stage / path.name)
        tools[name] = f"{GUEST_ROOT}/in/{path.name}" if path else None
    spec: AppEnvSpec = {"format": fmt, "artifacts": [f"{GUEST_ROOT}/in/artifacts/{a.filename}" for a in chosen],
                        "virtualenv": tools["virtualenv"], "pip": tools["pip"], "work": GUEST_WORK,
                        "out": f"{GUEST_ROOT}/out", "try": specs}
    (env_stage / "spec.json").write_text(contract.spec_text(spec))
    machine.copy_in(env_stage, f"{GUEST_ROOT}/in")
    shutil.rmtree(env_stage)
    echo(f"installing {len(chosen)} published {fmt}(s) offline and trying {len(specs)} import(s)")
    _run(machine, [platform.python, f"{GUEST_ROOT}/guest/appenv.py", f"{GUEST_ROOT}/in/spec.json"], platform, log, ok=(0, 1))
    machine.copy_out(f"{GUEST_ROOT}/out", work / "out")
    env = _result(work / "out" / "env-result.json", log)
    if not env.get("ok"):
        raise BuilderError(f"the test environment could not be made on {platform.name}: {env.get('error')}",
                           hint=f"the whole output is in {log.handle.name}")
    tried = {r["spec"]: r for r in _result(work / "out" / "try-result.json", log)["results"]} if specs else {}
    return _report(app, platform.name, scan, tried, artifacts, chosen, bool(reqs), fmt)


def _report(
    app: Path,
    platform: str,
    scan: dict,
    tried: dict[str, dict],
    artifacts: Sequence[published.Artifact],
    chosen: Sequence[published.Artifact],
    with_requirements: bool,
    fmt: Format,
) -> Report:
    installed = {a.filename for a in chosen}
    python = ".".join(scan["python"].split(".")[:2])

    def provider(module: str) -> str:
        # A namespace package (zope) is shared: each module below it is some one distribution's.
        found = published.providers_of(module, artifacts)
        if not found:
            shared = published.namespace_of(module, artifacts)
            if shared:
                return (f"{NOBODY} ({shared[0]} is a namespace package shared by "
                        f"{', '.join(sorted({a.package for a in shared[1]}))})")
            return NOBODY
        mine = [a for a in found if a.filename in installed]
        if mine:
            return ", ".join(f"{a.package} {a.version} ({a.filename})" for a in mine)
        packages = ", ".join(sorted({a.package for a in found}))
        if with_requirements:
            return f"{packages}: published, but not in the requirements"
        return f"{packages}: published, but no {fmt} of it for Python {python}"

    def failures(entries: list[dict]) -> tuple[Failure, ...]:
        found = []
        for entry in entries:
            result = tried.get(entry["spec"], {"ok": False, "error_type": "Error", "error": "not tried"})
            if not result["ok"]:
                error = f"{result['error_type']}: {result['error']}"
                found.append(Failure(f"{entry['file']}:{entry['line']}", entry["statement"], error, provider(entry["module"])))
        return tuple(found)

    problems = tuple(Failure(f"{p['file']}:{p['line']}", "", p["error"], OWN_CODE) for p in scan["problems"])
    return Report(
        app=str(app), platform=platform, python=scan["python"], files=scan["files"],
        tried=len(scan["imports"]) + len(scan["optional"]), own=len(scan["own"]),
        installed=tuple(a.filename for a in chosen),
        failures=problems + failures(scan["imports"]), optional=failures(scan["optional"]),
    )


def table(rows: Sequence[Failure]) -> list[str]:
    """Aligned plain-text columns: readable in a terminal and in a CI log alike."""
    header = Failure("where", "import", "error", "expected from")
    cells = [[r.where, r.statement or "-", r.error, r.provider] for r in (header, *rows)]
    widths = [min(max(len(c[i]) for c in cells), 60) for i in range(3)]
    return ["  ".join(c[i].ljust(widths[i]) for i in range(3)) + "  " + c[3] for c in cells]


def render(report: Report) -> list[str]:
    lines = [
        f"{report.app} on {report.platform} (Python {report.python}): {report.files} file(s), "
        f"{report.tried} import(s) tried, {report.own} of the application's own; "
        f"installed: {', '.join(report.installed) or 'nothing'}"
    ]
    if report.failures:
        lines += ["", f"{len(report.failures)} import(s) fail:", *table(report.failures)]
    if report.optional:
        lines += ["", f"{len(report.optional)} optional import(s) (guarded by except ImportError or a version "
                  "test) are not available; not failures:", *table(report.optional)]
    if report.ok:
        lines += ["", "every import works"]
    lines += [f"note: {note}" for note in report.notes]
    return lines


def failed(report: Report) -> ImportsFailed:
    return ImportsFailed(
        f"{len(report.failures)} import(s) of {report.app} fail on {report.platform}",
        hint=f"publish what provides each (python -m builder all --package NAME --platform {report.platform}), "
        "add it to the requirements, or fix the application",
    )

"""builder: build C-extension eggs and wheels per platform, test them where no compiler is,
publish them for offline installs. (This module is the only one that prints and exits.)"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from . import __version__, ownership
from .cells import pipeline, state
from .errors import BuilderError, CellsFailed, FetchError, ImageError, NotReproducible, SelectionError, UsageError
from .machines import registry
from .matrix import load as config
from .matrix import plan
from .matrix.model import Matrix
from .report import terminal as report

STAGE_HELP = {
    "all": "fetch, make images, build, test and publish the selected cells",
    "fetch": "fetch and verify the pinned sources and tools into the cache",
    "images": "make the platforms' base, runtime and build images",
    "build": "build the selected cells in their platforms' build images",
    "test": "test the built artifacts in the platforms' runtime images",
    "publish": "publish the tested artifacts into the output folder",
}


def _split(values: Sequence[str] | None) -> list[str]:
    return [v for value in values or () for v in value.split(",") if v]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m builder",
        description="Build C-extension eggs and wheels per platform, test them where no compiler is, "
        "and publish them for offline installs.",
    )
    top.add_argument("--version", action="version", version=f"builder {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--matrix", default="matrix.yaml", help="the matrix file (default: ./matrix.yaml)")
    common.add_argument("-v", "--verbose", action="store_true", help="stream guest output; tracebacks on errors")
    select = argparse.ArgumentParser(add_help=False)
    select.add_argument("--platform", action="append", metavar="GLOB", help="platforms to run (repeat or comma-separate)")
    select.add_argument("--package", action="append", metavar="GLOB", help="packages to run (repeat or comma-separate)")
    select.add_argument("--cell", action="append", metavar="ID", help="exact cell ids, e.g. debian12/pyyaml")
    for name, text in STAGE_HELP.items():
        command = sub.add_parser(name, parents=[common, select], help=text, description=text)
        command.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, help="cells at once (default: cores)")
        command.add_argument("--fail-fast", action="store_true", help="stop at the first failed cell")
        command.add_argument("--force", action="store_true", help="rebuild cells even when already published")
    sub.add_parser("list", parents=[common, select], help="list the cells, their ids and last results")
    matrix = sub.add_parser("matrix", parents=[common, select], help="print the selected cells for CI matrix jobs")
    matrix.add_argument("--format", choices=("github", "gitlab", "json"), default="json")
    merge = sub.add_parser("merge", parents=[common], help="publish the outputs of separate CI jobs into one index")
    merge.add_argument("parts", nargs="+", type=Path, metavar="DIR", help="folders the cell jobs uploaded")
    shell = sub.add_parser(
        "shell", parents=[common], help="a shell in a platform's image, or in a cell where it failed",
        description="PLATFORM: its runtime image (or --build). PLATFORM/PACKAGE: that cell's guest, "
        "with its source, tools, spec and scripts under /builder, at the stage that failed.",
    )
    shell.add_argument("target", metavar="PLATFORM|CELL")
    roles = shell.add_mutually_exclusive_group()
    roles.add_argument("--build", dest="role", action="store_const", const="build", help="the build image")
    roles.add_argument("--runtime", dest="role", action="store_const", const="runtime", help="the runtime image")
    shell.add_argument("--print", action="store_true", help="print the command instead of running it")
    sub.add_parser("clean", parents=[common], help="remove containers and temporary files that killed runs left")
    from .deploy import cli as deploy_cli  # deploy, rollback, releases

    deploy_cli.add_parsers(sub, common)
    check_imports = sub.add_parser(
        "check-imports", parents=[common], help="try an application's imports with a platform's published artifacts",
        description="Find every import of APP with the platform's own Python, install the platform's published "
        "artifacts (or --requirements) offline in its runtime image, and try each import there.",
    )
    check_imports.add_argument("app", type=Path, metavar="APP", help="the application's source tree")
    check_imports.add_argument("--platform", required=True, help="the platform to check on")
    check_imports.add_argument("--requirements", type=Path, metavar="FILE", help="install these (and what they need) only")
    check_imports.add_argument("--format", choices=("egg", "wheel"), default="egg", help="which artifacts to install")
    check_imports.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                               help="files or folders of APP not to scan (setup.py never is)")
    system = sub.add_parser(
        "system-packages", parents=[common], help="the OS packages a platform's servers need, for configuration management",
        description="Print the OS packages the servers of PLATFORM need to run what is published for it (the "
        "union of its published artifacts' run-time system packages, from OUTPUT/PLATFORM/system-packages.json), "
        "as a Puppet class, an Ansible playbook, a Salt state, one install command, or JSON.",
    )
    system.add_argument("--platform", required=True, help="the platform's name")
    system.add_argument("--format", choices=("puppet", "ansible", "salt", "shell", "json"), default="shell")
    system.add_argument("--package", action="append", metavar="GLOB",
                        help="only what these published packages need (repeat or comma-separate)")
    system.add_argument("--packages-at", metavar="DIR",
                        help="where the servers (or configuration management) find the interpreter package's file; "
                        "default: the published OUTPUT/PLATFORM/os folder")
    keygen = sub.add_parser("keygen", help="make a key to sign manifests with (FILE, 0600) and its public half FILE.pub.pem",
                            description="Make an RSA-3072 private key in FILE (mode 0600) and its public half in "
                            "FILE.pub.pem; never replaces a file. Set settings.signing_key to FILE.")
    keygen.add_argument("file", type=Path, metavar="FILE")
    keygen.add_argument("-v", "--verbose", action="store_true", help="tracebacks on errors")
    verify = sub.add_parser(
        "verify", parents=[common, select], help="re-hash the output folder against its manifests; --rebuild: rebuild and compare",
        description="Re-hash everything under the output folder against its manifests. With --rebuild: build the "
        "selected published cells again from their pinned inputs, in fresh guests, into the work folder, and compare "
        "each artifact byte for byte with the published one.",
    )
    verify.add_argument("--rebuild", action="store_true", help="rebuild the selected cells and compare with what is published")
    verify.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, help="cells at once (default: cores)")
    add = sub.add_parser(
        "add", parents=[common], help="derive a package's entry, prove it as a cell, publish it and write it into the matrix",
        description="Find NAME's release for each platform's Python on the index, its build requirements, the OS packages "
        "it needs to build (from probe builds and the platform's package index) and to run (from its compiled modules), "
        "build, test and publish it as a cell does, then add its entry to the matrix file and print the diff.",
    )
    add.add_argument("requirement", metavar="NAME[==VERSION]")
    add.add_argument("--platform", action="append", metavar="GLOB", help="platforms to derive it for (default: every enabled one)")
    add.add_argument("--dry-run", action="store_true", help="derive, build and test, show the entry; publish and write nothing")
    add.add_argument("--update", action="store_true", help="derive a package already in the matrix again (new version, new pins)")
    return top


def err_print(line: str) -> None:
    sys.stderr.write(line + "\n")


def _interrupted(signum: int, frame: object) -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C leaves at once
    if "builder.machines.vagrant.cell" in sys.modules:
        # Stop waiting on Vagrant machines (their commands end); they are destroyed at exit.
        sys.modules["builder.machines.vagrant.cell"].interrupt()
    if "builder.machines.engine" in sys.modules:
        try:
            registry.clean(os.getpid())
        except BuilderError as exc:  # not silent: "containers were stopped" would then be untrue
            err_print(f"error: {exc.message}" + (f"\n  hint: {exc.hint}" if exc.hint else ""))
    raise KeyboardInterrupt


def _tick(live: object, run: pipeline.Run, stop: threading.Event) -> None:
    while not stop.wait(0.25):
        live.update(report.progress(run))  # type: ignore[attr-defined]


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # Ctrl-C or a TERM: stop our containers first, so no guest outlives the run.
    signal.signal(signal.SIGINT, _interrupted)
    signal.signal(signal.SIGTERM, _interrupted)
    # Not a terminal (CI logs, pipes): wide enough that cell ids and reasons are never cut.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)
    try:
        return _dispatch(args, console)
    except CellsFailed as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        return exc.exit_code
    except BuilderError as exc:
        if args.verbose:
            traceback.print_exc()
        # Messages hold key paths like packages[2]: escaped, or rich would take them for markup.
        # Not a terminal: never wrapped (a hash or a path cut in two cannot be searched for).
        unwrapped = not sys.stderr.isatty()
        err.print(f"[red]error:[/] {escape(exc.message)}", markup=True, soft_wrap=unwrapped)
        if exc.hint:
            err.print(f"  hint: {exc.hint}", markup=False, soft_wrap=unwrapped)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted: running containers were stopped; rerun the same command to finish")
        return 130


@dataclass
class Context:
    """What every command gets: its arguments, the loaded matrix, the console, and the run's
    backends (each made once, on first use)."""

    args: argparse.Namespace
    matrix: Matrix
    console: Console
    backends: registry.Backends

    def say(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False)


def _dispatch(args: argparse.Namespace, console: Console) -> int:
    if args.command == "keygen":  # needs no matrix
        return _keygen(args.file)
    matrix = config.load(Path(args.matrix))
    ctx = Context(args, matrix, console, registry.Backends())
    command = COMMANDS.get(args.command, _stages)
    if args.command in ("verify", "list", "matrix", "system-packages") and not getattr(args, "rebuild", False):
        # They write nothing (verify --rebuild writes its builds into the work folder).
        return command(ctx)
    try:
        return command(ctx)
    finally:
        # Under sudo, what this command made in the project is the invoking user's (see ownership.py).
        settings = matrix.settings
        ownership.hand_over(matrix.root, (settings.output, settings.work, settings.cache), ownership.invoking_user())


def _deploy(ctx: Context) -> int:
    from .deploy import cli as deploy_cli

    return deploy_cli.run(ctx.matrix, ctx.args, lambda line: ctx.console.print(line, markup=False, highlight=False, soft_wrap=True))


def _add(ctx: Context) -> int:
    from .add import derive
    from .output.lock import run_lock

    args = ctx.args
    with run_lock(ctx.matrix.settings.work, ctx.say):
        outcome = derive.add(Path(args.matrix), args.requirement, _split(args.platform), dry_run=args.dry_run,
                             update=args.update, backends=ctx.backends, echo=ctx.say)
    for line in derive.summary(outcome):
        ctx.say(line)
    sys.stdout.write(derive.entries.diff(outcome.old, outcome.text, args.matrix))
    if args.dry_run:
        ctx.say(f"--dry-run: {args.matrix} and the output folder are unchanged")
    else:
        ctx.say(f"published and written to {args.matrix}")
    return 0


def _verify(ctx: Context) -> int:
    from .output import signing
    from .output.publish import verify

    args = ctx.args
    if args.rebuild:
        return _rebuild(ctx)
    if args.cell or args.platform or args.package:
        raise UsageError("--cell, --platform and --package choose the cells to rebuild: give --rebuild too",
                         hint="plain `verify` re-hashes the whole output folder")
    output = ctx.matrix.settings.output
    keys = signing.keys(ctx.matrix.settings, sign=False)
    problems = verify(output, keys)
    for problem in problems:
        ctx.console.print(f"{problem.kind}: {problem.path} {problem.detail}", markup=False)
    if problems:
        raise BuilderError(f"{len(problems)} problem(s) in {output}", hint="rebuild and republish them")
    signed = f", and every manifest is signed by {keys.path} (key sha256 {keys.fingerprint[:16]})" if keys else ""
    ctx.console.print(f"{output}: every artifact matches its manifest{signed}", markup=False)
    return 0


def _keygen(path: Path) -> int:
    from .output import signing

    public = signing.keygen(path)
    keys = signing.Keys(path, signing.public_key(public), None)
    sys.stdout.write(f"wrote {path} (private, mode 0600) and {public} (public); key sha256 {keys.fingerprint}\n"
                     f"set settings.signing_key: {path} in matrix.yaml (or BUILDER_SIGNING_KEY={path})\n")
    return 0


def _rebuild(ctx: Context) -> int:
    """verify --rebuild: the selected published cells built again and compared byte for byte."""
    from .cells import rebuild
    from .machines.images import require_dockerfiles
    from .output.lock import run_lock

    args, matrix = ctx.args, ctx.matrix
    cells = _selected(ctx)
    require_dockerfiles(dict.fromkeys(c.platform for c in cells))
    blocked = pipeline.preflight(matrix, cells, ctx.backends)
    pipeline.refuse_if_blocked(blocked, cells)
    with run_lock(matrix.settings.work, ctx.say):
        run = pipeline.Run(matrix, cells, jobs=args.jobs, verbose=args.verbose, echo=ctx.say, blocked=blocked,
                           backends=ctx.backends, save_state=False)
        pipeline.execute(run, rebuild.STAGES)
    differs, unchecked = report.rebuilt(run, cells, ctx.console)
    if differs:
        raise NotReproducible(f"{len(differs)} of {len(cells)} cell(s) did not rebuild to the published bytes: "
                              f"{', '.join(c.id for c in differs)}", hint="the lines above say which members differ")
    if unchecked:
        raise CellsFailed(f"{len(unchecked)} of {len(cells)} cell(s) could not be rebuilt and compared: "
                          f"{', '.join(c.id for c in unchecked)}")
    return 0


def _shell(ctx: Context) -> int:
    from .cells import shell

    args = ctx.args
    found = shell.prepare(ctx.matrix, args.target, args.role, lambda line: err_print(line), ctx.backends)
    if args.print:
        sys.stdout.write(shlex.join(found.argv) + "\n")
        return 0
    err_print(f"{args.target}: {found.role} guest, no network; try: {found.hint}")
    shell.enter(found)
    return 0  # pragma: no cover - enter() replaces this process


def _check_imports(ctx: Context) -> int:
    from .imports import check as imports

    args = ctx.args
    checked = imports.check(ctx.matrix, args.app, args.platform, args.requirements, args.format, echo=err_print,
                            log_echo=err_print if args.verbose else None, excludes=args.exclude,
                            backends=ctx.backends)
    for line in imports.render(checked):
        ctx.console.print(line, markup=False, highlight=False, soft_wrap=True)
    if not checked.ok:
        raise imports.failed(checked)
    return 0


def _clean(ctx: Context) -> int:
    from .output import publish

    for name in registry.clean(platforms=ctx.matrix.platforms):
        ctx.console.print(f"removed container {name}", markup=False)
    if ctx.matrix.settings.output.is_dir():
        for line in publish.recover(ctx.matrix.settings.output):
            ctx.console.print(line, markup=False)
    ctx.console.print("clean: nothing of a killed run is left", markup=False)
    return 0


def _merge(ctx: Context) -> int:
    from .output.merge import merge

    count = merge(ctx.matrix, ctx.args.parts, lambda line: ctx.console.print(line, markup=False))
    ctx.console.print(f"merged {count} cell(s) into {ctx.matrix.settings.output}", markup=False)
    return 0


def _selected(ctx: Context) -> list[plan.Cell]:
    args = ctx.args
    return plan.select(ctx.matrix, _split(args.platform), _split(args.package), _split(args.cell))


def _system_packages(ctx: Context) -> int:
    from .output import system

    args, matrix = ctx.args, ctx.matrix
    folder = matrix.settings.output / args.platform
    known = [p.name for p in matrix.platforms]
    if args.platform not in known and not (folder / "manifest.json").exists():
        raise SelectionError(f"no platform {args.platform!r} in {matrix.path.name}, and nothing published in {folder}",
                             hint=f"the matrix declares: {', '.join(known)}")
    found = system.read(matrix.settings.output, args.platform).only(_split(args.package))
    if args.packages_at:
        found = dataclasses.replace(found, at=args.packages_at.rstrip("/") or "/")
    path = folder / system.FILENAME
    shown = path.relative_to(matrix.root) if path.is_relative_to(matrix.root) else path
    # Plain stdout: the output is to paste into configuration management, never console markup.
    sys.stdout.write(system.render(found, args.format, str(shown)))
    if found.unknown:
        err_print(f"warning: {shown} has no record of what {', '.join(found.unknown)} need: the list may be "
                  f"incomplete; publish them again: python -m builder all --platform {args.platform} --force")
    return 0


def _matrix(ctx: Context) -> int:
    from .matrix.ci import matrix_document

    cells = _selected(ctx)
    # Plain stdout: the document is data for a CI system, never console markup.
    sys.stdout.write(matrix_document(cells, ctx.args.format))
    if ctx.args.format == "github":
        sys.stdout.write("\n")
    return 0


def _list(ctx: Context) -> int:
    cells = _selected(ctx)
    run = pipeline.Run(ctx.matrix, cells)
    for cell in cells:
        for stage in ("fetch", "images", "build", "test", "publish"):
            try:
                saved = state.load(ctx.matrix.settings.folders, cell, stage)
            except state.CorruptState as exc:
                saved = state.StageResult(cell.id, stage, "failed", reason=exc.message)
            if saved is not None:
                run.results.setdefault(cell.id, {})[stage] = saved
    report.cell_list(cells, run, ctx.console)
    return 0


def _stages(ctx: Context) -> int:
    """all, fetch, images, build, test, publish: the pipeline's stages over the selected cells."""
    from .machines.images import require_dockerfiles

    args, matrix = ctx.args, ctx.matrix
    cells = _selected(ctx)
    require_dockerfiles(dict.fromkeys(c.platform for c in cells))  # a config error: before anything runs
    if args.command in ("all", "publish"):
        from .output import signing

        signing.keys(matrix.settings, sign=True)  # so is a bad signing key
    blocked: dict[str, ImageError] = {}
    if args.command != "fetch":
        # A platform that cannot run here (its base image or box missing) is said once, before
        # anything is fetched; when it is all that was selected, that is the whole answer.
        blocked = pipeline.preflight(matrix, cells, ctx.backends)
        pipeline.refuse_if_blocked(blocked, cells)

    from .output.lock import run_lock

    with run_lock(matrix.settings.work, ctx.say):
        return _run(ctx, cells, blocked)


COMMANDS: dict[str, Callable[[Context], int]] = {
    "add": _add,
    "deploy": _deploy,
    "rollback": _deploy,
    "releases": _deploy,
    "doctor": _deploy,
    "verify": _verify,
    "shell": _shell,
    "check-imports": _check_imports,
    "clean": _clean,
    "merge": _merge,
    "matrix": _matrix,
    "system-packages": _system_packages,
    "list": _list,
    **dict.fromkeys(STAGE_HELP, _stages),
}


def _run(ctx: Context, cells: list[plan.Cell], blocked: dict[str, ImageError]) -> int:
    args, matrix, console = ctx.args, ctx.matrix, ctx.console
    run = pipeline.Run(
        matrix, cells, jobs=args.jobs, fail_fast=args.fail_fast, verbose=args.verbose, force=args.force,
        echo=ctx.say, blocked=blocked, backends=ctx.backends,
    )
    try:
        if console.is_terminal and not args.verbose:
            # A live view of the running cells; CI logs (no terminal) and -v get plain lines.
            from rich.live import Live

            with Live(report.progress(run), console=console, refresh_per_second=4, transient=True) as live:
                run.echo = lambda line: live.console.print(line, markup=False, highlight=False)
                stop = threading.Event()
                ticker = threading.Thread(target=_tick, args=(live, run, stop), daemon=True)
                ticker.start()
                try:
                    pipeline.execute(run, pipeline.STAGES[args.command])
                finally:
                    stop.set()
        else:
            pipeline.execute(run, pipeline.STAGES[args.command])
    finally:
        from .report import files as reports

        written = reports.write_reports(matrix.settings.work / "report", f"builder {args.command}", reports.from_run(run))
        console.print(f"reports: {written['html']} (also {written['junit'].name}, {written['json'].name})", markup=False)
        report.summary(run, console, args.command)
    failed = cells_failed(run, cells, args.command)
    if failed is not None:
        raise failed
    return 0


def cells_failed(run: pipeline.Run, cells: Sequence[plan.Cell], command: str) -> CellsFailed | None:
    """The error a run ends with when some cells did not pass, or None. Its exit status is the
    README's for the stage they failed at when all failed at the same early one (3: fetch, a wrong
    sha256 too; 5: images), else 1."""
    final = {"all": "publish"}.get(command, command)
    if command in ("fetch", "images"):
        bad = [c for c in cells if run.failed(c)]
    else:
        bad = [c for c in cells if not report.passed(run, c, final)]
    if not bad:
        return None
    failed = CellsFailed(f"{len(bad)} of {len(cells)} cell(s) did not pass: {', '.join(c.id for c in bad)}")
    stages = {report.outcome(run, c)[1] for c in bad}
    if stages == {"fetch"}:
        failed.exit_code = FetchError.exit_code
    elif stages == {"images"}:
        failed.exit_code = ImageError.exit_code
    return failed


if __name__ == "__main__":
    sys.exit(main())

"""Doing one cell's build and test in guests. Each returns a StageResult; none raises for the
cell's own failure, so one cell never stops the others."""
from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from packaging.utils import canonicalize_name

from ..errors import BuilderError
from ..machines import provides
from ..machines.base import GUEST_ROOT, GUEST_WORK, Backend, Exec, Images, Role
from ..matrix.model import Matrix, Pin, file_of
from ..matrix.plan import Cell
from . import contract
from .contract import BuildSpec, CheckItem, CheckSpec, Prepared, PrepareSpec
from .state import StageResult, cell_dir, fresh_dir

GUEST_DIR = Path(__file__).resolve().parent.parent / "guest"


# The in-guest scripts a cell's build and test run. The other scripts beside them (the import
# check, deploy's per-host steps) do not change an artifact, so they are no part of its key
# (and a new one leaves published cells up to date). guest/__init__.py is empty on purpose: it is
# one of them, so every word in it would change every key.
CELL_SCRIPTS = ("__init__.py", "_common.py", "_reproducible.py", "build.py", "check.py")


def guest_digest() -> str:
    """The cell scripts' version: part of every cell's input key."""
    digest = hashlib.sha256()
    for path in sorted(GUEST_DIR / name for name in CELL_SCRIPTS):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def reproduce(cell: Cell, stage: str = "") -> str:
    """The commands that reproduce a cell's failure at `stage`: no shell into a guest when the
    cell failed before it had images (fetch, images), since there is none to enter."""
    again = f"python -m builder all --cell {cell.id}"
    return again if stage in ("fetch", "images") else f"{again}; inside: python -m builder shell {cell.id}"


def _tool(pins: Sequence[Pin], sources: Mapping[str, Path], name: str) -> Path | None:
    for pin in pins:
        if canonicalize_name(pin.name) == name:
            return sources[pin.sha256]
    return None


def stage_inputs(stage_dir: Path, spec: Mapping[str, object], files: Mapping[str, Path]) -> Path:
    """Lay out what the guest gets under /builder in one folder, so it is copied in one go."""
    root = fresh_dir(stage_dir)
    shutil.copytree(GUEST_DIR, root / "guest", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for rel, src in files.items():
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dest)
        except OSError:
            shutil.copyfile(src, dest)
    (root / "spec.json").write_text(contract.spec_text(spec))
    return root


class _Log:
    def __init__(self, path: Path, echo: Callable[[str], None] | None) -> None:
        self.handle = open(path, "a", encoding="utf-8")
        self.echo = echo

    def __call__(self, line: str) -> None:
        self.handle.write(line + "\n")
        self.handle.flush()
        if self.echo:
            self.echo(line)

    def close(self) -> None:
        self.handle.close()


def _run_guest(
    backend: Backend,
    cell: Cell,
    images: Images,
    role: Role,
    inputs: Path,
    script: str,
    out: Path,
    log: _Log,
) -> tuple[Exec, dict[str, float]]:
    """Run one in-guest script in a fresh machine; also say where the time went (seconds per
    step: start, copy in, run, copy out, stop), so fixed costs can be seen beside the work."""
    limits = cell.platform.limits
    timings: dict[str, float] = {}
    mark = time.monotonic()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        timings[name] = round(now - mark, 3)
        mark = now

    with backend.machine(cell.platform, images, role, limits, cell.id) as machine:
        lap("start")
        machine.copy_in(inputs, GUEST_ROOT, mkdirs=[f"{GUEST_ROOT}/out"])
        lap("copy_in")
        env = {"HOME": f"{GUEST_WORK}/home", "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
        result = machine.run(
            [cell.platform.python, f"{GUEST_ROOT}/guest/{script}", f"{GUEST_ROOT}/spec.json"],
            env=env,
            timeout=limits.timeout,
            log=log,
        )
        lap("run")
        if not result.timed_out:
            machine.copy_out(f"{GUEST_ROOT}/out", out)
        lap("copy_out")
    lap("stop")
    return result, timings


def build_inputs(cell: Cell, sources: Mapping[str, Path]) -> tuple[BuildSpec, dict[str, Path]]:
    """The build guest's spec and files (paths under /builder), as a cell and a shell get them."""
    spec = cell.spec
    sdist = sources[spec.source.sha256]
    files: dict[str, Path] = {f"in/{sdist.name}": sdist}
    tools = []
    for pin in spec.build_requires:
        files[f"tools/{sources[pin.sha256].name}"] = sources[pin.sha256]
        tools.append(f"{GUEST_ROOT}/tools/{sources[pin.sha256].name}")
    virtualenv = _tool(cell.platform.tools, sources, "virtualenv")
    if virtualenv:
        files[f"tools/{virtualenv.name}"] = virtualenv
    guest_spec: BuildSpec = {
        "sdist": f"{GUEST_ROOT}/in/{sdist.name}",
        "name": cell.package.name,
        "version": spec.source.version,
        "formats": list(cell.package.formats),
        "build_requires": tools,
        "virtualenv": f"{GUEST_ROOT}/tools/{virtualenv.name}" if virtualenv else None,
        "setup_args": list(spec.setup_args),
        "config_settings": [list(pair) for pair in spec.config_settings],
        "env": dict(spec.env),
        "work": GUEST_WORK,
        "out": f"{GUEST_ROOT}/out",
    }
    return guest_spec, files


def build(
    backend: Backend,
    matrix: Matrix,
    cell: Cell,
    images: Images,
    sources: Mapping[str, Path],
    echo: Callable[[str], None] | None = None,
    base: Path | None = None,
) -> StageResult:
    """Build the cell in a fresh guest into BASE/build (BASE: the cell's work folder, unless a
    rebuild gives it another, so that the cell's own last build stays as it was)."""
    started = time.monotonic()
    base = base or cell_dir(matrix.settings.folders, cell)
    out = fresh_dir(base / "build")
    log_path = base / "build.log"
    log_path.unlink(missing_ok=True)
    log = _Log(log_path, echo)
    guest_spec, files = build_inputs(cell, sources)
    result = StageResult(cell.id, "build", "failed", log=str(log_path), images={"build": images.build})
    try:
        # A build virtualenv (Python 2: setuptools) costs 2-4 s to make; made once per platform.
        prepared = prepared_env(backend, matrix, cell, images, sources, log, "build") if guest_spec["virtualenv"] else None
        if prepared is not None:
            files["prepared/tree.tar"] = prepared[0]
            guest_spec.update(prepared[1])
        inputs = stage_inputs(base / "stage-build", guest_spec, files)
        done, timings = _run_guest(backend, cell, images, "build", inputs, "build.py", out, log)
        code, timed_out = done.returncode, done.timed_out
        report = contract.read_result(out / contract.BUILD_RESULT)
        result.details["timings"] = {"host": timings, "guest": report.get("timings", {}), "compile_cpu": report.get("cpu", {})}
        if timed_out:
            result.reason = f"build stopped after {cell.platform.limits.timeout} s (limits.timeout)"
        elif done.out_of_memory:
            result.reason = f"build killed: it went over limits.memory ({cell.platform.limits.memory})"
        elif code != 0 or not report.get("ok"):
            result.reason = "build failed: " + str(report.get("error") or f"build.py exited {code}")
        else:
            result.artifacts = [str(out / a["filename"]) for a in report.get("artifacts", [])]
            result.status = "passed"
        result.details.update({"python": report.get("python"), "returncode": code,
                               "commands": report.get("commands") or {}})
    except BuilderError as exc:
        result.reason = f"build could not run: {exc.message}"
    finally:
        log.close()
        shutil.rmtree(base / "stage-build", ignore_errors=True)
    result.duration = time.monotonic() - started
    return result


def artifact_format(path: str) -> str:
    return "egg" if path.endswith(".egg") else "wheel"


def test(
    backend: Backend,
    matrix: Matrix,
    cell: Cell,
    images: Images,
    built: StageResult,
    deps: Mapping[str, StageResult],
    sources: Mapping[str, Path],
    echo: Callable[[str], None] | None = None,
) -> StageResult:
    """Install and check each artifact of the cell in the runtime image.

    All formats are checked in one guest, one after the other, each in its own fresh
    environment: one container start and one copy per cell instead of per format.
    """
    started = time.monotonic()
    base = cell_dir(matrix.settings.folders, cell)
    log_path = base / "test.log"
    log_path.unlink(missing_ok=True)
    log = _Log(log_path, echo)
    result = StageResult(
        cell.id, "test", "failed", log=str(log_path), artifacts=list(built.artifacts),
        images={"build": images.build, "runtime": images.runtime},
    )
    reasons: list[str] = []
    checks: dict[str, dict] = {}
    timings: dict[str, float] = {}
    try:
        for dep_id, dep in deps.items():
            if not dep.ok:
                reasons.append(f"needs {dep_id}, whose build failed")
        items: list[tuple[Path, str, list[Path]]] = []
        for artifact in built.artifacts if not reasons else ():
            fmt = artifact_format(artifact)
            dep_files = [a for d in deps.values() for a in d.artifacts if artifact_format(a) == fmt]
            missing = [d for d, r in deps.items() if not any(artifact_format(a) == fmt for a in r.artifacts)]
            if missing:
                reasons.append(f"needs a {fmt} of {', '.join(missing)}, which is not built in that format")
                continue
            items.append((Path(artifact), fmt, [Path(d) for d in dep_files]))
        if items:
            checks, timings = _check_all(backend, matrix, cell, images, items, sources, log)
            for report in checks.values():
                reasons.extend(_reasons(cell, report))
    except BuilderError as exc:
        reasons.append(f"test could not run: {exc.message}")
    finally:
        log.close()
    result.details = {"checks": checks, "timings": {"host": timings}}
    if reasons:
        result.reason = reasons[0] + (f" (+{len(reasons) - 1} more, see the log)" if len(reasons) > 1 else "")
        result.details["reasons"] = reasons
    else:
        result.status = "passed"
    result.duration = time.monotonic() - started
    return result


def checks_inputs(
    cell: Cell, items: Sequence[tuple[Path, str, Sequence[Path]]], sources: Mapping[str, Path]
) -> tuple[CheckSpec, dict[str, Path]]:
    """The test guest's spec and files for checking several artifacts (one per format) and the
    artifacts each needs, in one guest: each item's result goes to out/<format>/check-result.json."""
    files: dict[str, Path] = {}
    entries: list[CheckItem] = []
    for artifact, fmt, dep_files in items:
        files[f"in/{artifact.name}"] = artifact
        files.update({f"deps/{d.name}": d for d in dep_files})
        entries.append({
            "artifact": f"{GUEST_ROOT}/in/{artifact.name}", "format": fmt,
            "deps": [f"{GUEST_ROOT}/deps/{d.name}" for d in dep_files], "out": f"{GUEST_ROOT}/out/{fmt}",
        })
    tools = {}
    for name in ("virtualenv", "pip"):
        path = _tool(cell.platform.tools, sources, name)
        if path:
            files[f"tools/{path.name}"] = path
            tools[name] = f"{GUEST_ROOT}/tools/{path.name}"
    spec = cell.spec
    guest_spec: CheckSpec = {
        "items": entries,
        "virtualenv": tools.get("virtualenv"),
        "pip": tools.get("pip"),
        "extensions": None if spec.extensions is None else list(spec.extensions),
        "skip_imports": list(spec.skip_imports),
        "test": spec.test,
        "work": GUEST_WORK,
        "out": f"{GUEST_ROOT}/out",
        # What "toolless" means depends on the family (FreeBSD's base system has cc): the check
        # also proves the package's build-only OS packages are not in the runtime guest.
        "family": cell.platform.family,
        "build_only": sorted(set(cell.system.build) - set(cell.system.runtime)),
        # Their versions as installed in this very image go into the SBOM (see output/sbom.py).
        "runtime_packages": sorted(set(cell.system.runtime)),
    }
    return guest_spec, files


def _check_all(
    backend: Backend,
    matrix: Matrix,
    cell: Cell,
    images: Images,
    items: Sequence[tuple[Path, str, Sequence[Path]]],
    sources: Mapping[str, Path],
    log: _Log,
) -> tuple[dict[str, dict], dict[str, float]]:
    base = cell_dir(matrix.settings.folders, cell)
    out = fresh_dir(base / "test")
    guest_spec, files = checks_inputs(cell, items, sources)
    # The prepared environment pays where an environment is dear (a virtualenv, on Python 2)
    # or pip installs a wheel; an egg on Python 3 needs only `venv --without-pip` (0.1 s).
    dear = _tool(cell.platform.tools, sources, "virtualenv") is not None or any(fmt == "wheel" for _, fmt, _ in items)
    prepared = prepared_env(backend, matrix, cell, images, sources, log, "runtime") if dear else None
    if prepared is not None:
        files["prepared/tree.tar"] = prepared[0]
        guest_spec.update(prepared[1])
    log("== checking " + ", ".join(artifact.name for artifact, _, _ in items) + " in the runtime image")
    try:
        inputs = stage_inputs(base / "stage-test", guest_spec, files)
        done, timings = _run_guest(backend, cell, images, "runtime", inputs, "check.py", out, log)
        code, timed_out = done.returncode, done.timed_out
    finally:
        shutil.rmtree(base / "stage-test", ignore_errors=True)
    reports: dict[str, dict] = {}
    for artifact, fmt, _ in items:
        report = contract.read_result(out / fmt / contract.CHECK_RESULT)
        if timed_out:
            report = {"ok": False, "reasons": [f"test stopped after {cell.platform.limits.timeout} s (limits.timeout)"]}
        elif done.out_of_memory:
            report = {"ok": False, "reasons": [f"test killed: it went over limits.memory ({cell.platform.limits.memory})"]}
        elif not report:
            report = {"ok": False, "reasons": [f"check.py exited {code} without a result for {artifact.name} (see the log)"]}
        elif code != 0 and report.get("ok") and not _any_failed(out, items):
            report["ok"] = False
            report.setdefault("reasons", []).append(f"check.py exited {code}")
        report["artifact"] = artifact.name
        reports[fmt] = report
    return reports, timings


_PREPARING: dict[str, threading.Lock] = {}
_PREPARING_GUARD = threading.Lock()

# What each role's guests can start from, made once per platform: (script, tools, cache folder,
# what the log calls it). Build guests on Python 2 need a virtualenv for setuptools (2-4 s to
# make); test guests need a fresh environment and pip.
_PREPARED = {
    "build": ("build.py", ("virtualenv",), "build-envs", "build"),
    "runtime": ("check.py", ("virtualenv", "pip"), "test-envs", "test"),
}


def prepared_env(
    backend: Backend, matrix: Matrix, cell: Cell, images: Images, sources: Mapping[str, Path], log: _Log, role: Role
) -> tuple[Path, Prepared] | None:
    """What every guest of the platform's `role` starts from, made once (the script's prepare():
    a fresh environment, byte-compiled, as a tar the guest wrote) in a guest of that image that no
    sdist or artifact touches, and kept in the cache keyed by the image, the Python, the tools and
    the in-guest scripts; the host never opens it. Each guest unpacks its own copy at the path
    it was made at, so every cell still starts from an untouched environment. Returns (tar, spec
    keys for the guest, the tar's guest path among them), or None to let each guest make its own, which the log then says."""
    script, names, where, what = _PREPARED[role]
    tools = {name: _tool(cell.platform.tools, sources, name) for name in names}
    if tools.get("virtualenv") and not backend.same_paths:
        # A virtualenv 16 environment holds its own absolute path (scripts' #! lines): it is used
        # only where it was made. venv --without-pip and an unpacked pip move as they are.
        return None
    image = images.build if role == "build" else images.runtime
    digest = hashlib.sha256(
        "\0".join([role, image, cell.platform.python, guest_digest(), *(str(p) for p in tools.values())]).encode()
    ).hexdigest()[:24]
    folder = matrix.settings.cache / where
    tar, about = folder / f"{cell.platform.name}-{digest}.tar", folder / f"{cell.platform.name}-{digest}.json"
    with _PREPARING_GUARD:
        lock = _PREPARING.setdefault(digest, threading.Lock())
    with lock:
        if tar.is_file() and about.is_file():
            return tar, _prepared_keys(contract.read_result(about))
        files = {f"tools/{path.name}": path for path in tools.values() if path}
        paths = {name: f"{GUEST_ROOT}/tools/{path.name}" for name, path in tools.items() if path}
        spec: PrepareSpec = {
            "prepare": True, "work": GUEST_WORK, "out": f"{GUEST_ROOT}/out",
            "virtualenv": paths.get("virtualenv"), "pip": paths.get("pip"),
        }
        stage = fresh_dir(folder / f".stage-{digest}-{os.getpid()}-{threading.get_ident()}")
        try:
            inputs = stage_inputs(stage / "in", spec, files)
            label = f"{cell.platform.name}/{what}-env"
            with backend.machine(cell.platform, images, role, cell.platform.limits, label) as machine:
                machine.copy_in(inputs, GUEST_ROOT, mkdirs=[f"{GUEST_ROOT}/out"])
                env = {"HOME": f"{GUEST_WORK}/home", "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
                done = machine.run([cell.platform.python, f"{GUEST_ROOT}/guest/{script}", f"{GUEST_ROOT}/spec.json"],
                                   env=env, timeout=cell.platform.limits.timeout, log=log)
                if not done.timed_out:
                    machine.copy_out(f"{GUEST_ROOT}/out", stage / "out")
            result = contract.read_result(stage / "out" / contract.PREPARE_RESULT)
            if done.returncode != 0 or not result.get("ok") or not (stage / "out" / "tree.tar").is_file():
                why = "; ".join(result.get("reasons") or []) or f"{script} exited {done.returncode}"
                log(f"the platform's shared {what} environment could not be made ({why}): this {what} makes its own")
                return None
            keys = {"prepared_env": result["how"], **(result.get("spec") or {})}
            (stage / "about.json").write_text(contract.spec_text(keys))
            os.replace(stage / "out" / "tree.tar", tar)  # the tar first: about.json says it is whole
            os.replace(stage / "about.json", about)
            return tar, _prepared_keys(keys)
        except BuilderError as exc:
            log(f"the platform's shared {what} environment could not be made ({exc.message}): this {what} makes its own")
            return None
        finally:
            shutil.rmtree(stage, ignore_errors=True)


def _prepared_keys(about: Mapping[str, object]) -> Prepared:
    """The spec keys a guest gets from its platform's prepared environment (what the preparing
    guest reported, as kept in the cache), with where the tar is in the guest."""
    keys: Prepared = {"prepared_tar": f"{GUEST_ROOT}/prepared/tree.tar"}
    for name in ("prepared_env", "pip_dir"):
        value = about.get(name)
        if isinstance(value, str):
            keys[name] = value
    return keys


def _any_failed(out: Path, items: Sequence[tuple[Path, str, Sequence[Path]]]) -> bool:
    """check.py exits 1 when any item failed; that is no reason to fail the items that passed."""
    return any(not contract.read_result(out / fmt / contract.CHECK_RESULT).get("ok") for _, fmt, _ in items)


LOOKUP = provides.soname_packages  # the unit tests give their own: no engine there


def _providers(cell: Cell, sonames: set[str]) -> dict[str, str]:
    """soname -> the platform's package that ships it, from its package index (Debian and Red Hat platforms;
    the same look-up `add` uses). Nothing when it cannot be asked: the reason still names the key."""
    if not sonames:
        return {}
    try:
        return LOOKUP(cell.platform, sonames)
    except BuilderError:
        return {}


def _reasons(cell: Cell, report: dict) -> list[str]:
    """One actionable line per problem; shared libraries are named with where to add them."""
    if report.get("ok"):
        return []
    family = cell.platform.family
    lines: list[str] = []
    missing = sorted((report.get("missing_libraries") or {}).items())
    named = _providers(cell, {lib for _, libs in missing for lib in libs})
    for so, libs in missing:
        for lib in libs:
            package = f"the OS package providing it ({named[lib]} on {cell.platform.name})" if lib in named else \
                "the OS package providing it"
            lines.append(
                f"{so} needs {lib}, which the {cell.platform.name} runtime image lacks: add {package} "
                f"to packages[{cell.package.name}].system.{family}.runtime in {file_of(cell.package.location)}"
            )
    for so, versions in sorted((report.get("missing_versions") or {}).items()):
        lines.append(
            f"{so} needs {', '.join(versions)}, newer than the {cell.platform.name} runtime provides: "
            "build it on an image no newer than production"
        )
    library_lines = bool(lines)
    for reason in report.get("reasons") or []:
        if library_lines and ("ldd" in reason or " needs " in reason):
            continue  # already said above, with the matrix key to change
        lines.append(str(reason))
    return lines or ["the check failed without a reason (see the log)"]

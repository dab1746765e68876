"""builder's benchmark: one command, side by side on the same images and packages.

    python bench/run.py [--quick] [--json out.json] [--keep]

It measures, in one run on this machine (images present, sources cached; nothing published: every
builder run gets fresh output and work folders under a temporary folder):

  a. builder's cell time (build + test + publish of an egg) ÷ the same compile by hand
     (`docker run --rm --network none <build image> … python setup.py bdist_egg` on the same
     verified sdist, with the same build requirements and environment), for PyYAML (libyaml),
     simplejson and six on debian12 and debian11-py27; the difference is builder's per-cell
     overhead (container starts, copies, the test in the runtime image, publishing);
  b. a cold `all -j1` ÷ a cold `all -j2` on the shipped matrix;
  c. a warm `all` (nothing changed) ÷ the cold one;
  d. builder, wheels only (built *and* tested) ÷ cibuildwheel building the same wheels in the same
     local build image (a tag of it with the /opt/python links cibuildwheel looks for);
  e. the physical limit: the compile steps' CPU time summed over the cold run's cells ÷ cores,
     beside the cold run's wall time.

It prints a table of ratios and writes every figure as JSON (default bench/results/latest.json).
The machine may be shared: figures are noisy, which is why each ratio compares runs made side by
side, and the by-hand comparison takes the fastest of its repetitions on both sides.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "matrix.yaml"
# Kept between runs: the cibuildwheel virtualenv (never a dependency of the project) and the
# verified source cache builder itself uses.
HOME = REPO / ".builder" / "bench"
CACHE = REPO / ".builder" / "cache"
CIBW_VERSION = "4.3.3"
LABEL = "io.builder.bench"

BY_HAND_CELLS = [("PyYAML", "debian12"), ("simplejson", "debian12"), ("six", "debian12"),
                 ("PyYAML", "debian11-py27"), ("simplejson", "debian11-py27"), ("six", "debian11-py27")]
# cibuildwheel builds platform wheels only (a pure package makes it stop with exit 5).
WHEEL_PACKAGES = ["PyYAML", "simplejson", "MarkupSafe"]


def say(text: str) -> None:
    print(text, flush=True)


# --- matrices and builder runs -------------------------------------------------------------------

def load_shipped() -> dict[str, Any]:
    data = yaml.safe_load(SHIPPED.read_text())  # anchors resolved: a plain tree to edit
    assert isinstance(data, dict)
    return data


def project(root: Path, name: str, data: dict[str, Any], formats: list[str] | None = None) -> Path:
    """A project folder with the shipped images and a copy of the matrix whose output and work
    are inside it. Every package stays in the matrix (only the selection on the command line
    changes), so the platforms' system package lists, and hence the images, are the shipped ones."""
    folder = root / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "images").symlink_to(REPO / "images", target_is_directory=True)
    # The shipped matrix's vagrant platform finds its machines in the project's Vagrantfile.
    (folder / "Vagrantfile").symlink_to(REPO / "Vagrantfile")
    copy = json.loads(json.dumps(data))
    copy.setdefault("settings", {}).update({"output": "eggs", "work": "work", "cache": str(CACHE)})
    if formats:
        for package in copy["packages"]:
            package["formats"] = list(formats)
    (folder / "matrix.yaml").write_text(yaml.safe_dump(copy, sort_keys=False))
    return folder / "matrix.yaml"


@dataclass
class Timed:
    wall: float
    code: int
    output: str


def builder(matrix: Path, *args: str) -> Timed:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "builder", *args, "--matrix", str(matrix)], cwd=matrix.parent,
                          env=env, capture_output=True, text=True, check=False)
    return Timed(time.monotonic() - started, done.returncode, done.stdout + done.stderr)


def must(timed: Timed, what: str) -> Timed:
    if timed.code != 0:
        raise SystemExit(f"{what} failed (exit {timed.code}); the benchmark needs it to pass:\n{timed.output[-3000:]}")
    return timed


def stage_json(matrix: Path, cell: str, stage: str) -> dict[str, Any]:
    platform, package = cell.split("/")
    path = matrix.parent / "work" / "cells" / platform / package / f"{stage}.json"
    return json.loads(path.read_text())


def cell_ids(matrix: Path, *select: str) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "builder", "matrix", "--format", "json", *select, "--matrix", str(matrix)],
                          cwd=matrix.parent, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, check=True)
    return [entry["id"] for entry in json.loads(done.stdout)["cells"]]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- a. builder vs by hand -------------------------------------------------------------------------

def source_file(pin_sha: str) -> Path:
    found = list((CACHE / "sources" / pin_sha).glob("*"))
    if len(found) != 1:
        raise SystemExit(f"{pin_sha} is not in {CACHE}: run `python -m builder fetch` first")
    return found[0]


def spec_of(data: dict[str, Any], package: str, platform: str) -> dict[str, Any]:
    pkg = next(p for p in data["packages"] if p["name"] == package)
    spec = {k: pkg.get(k) for k in ("version", "sha256", "build_requires", "setup_args", "env")}
    spec.update((pkg.get("overrides") or {}).get(platform) or {})
    return spec


def parse_times(text: str) -> float | None:
    """CPU seconds of the shell's children from `times` (its last line: user then system)."""
    lines = [line for line in text.strip().splitlines() if re.fullmatch(r"\s*\d+m[\d.]+s\s+\d+m[\d.]+s\s*", line)]
    if not lines:
        return None
    total = 0.0
    for minutes, seconds in re.findall(r"(\d+)m([\d.]+)s", lines[-1]):
        total += int(minutes) * 60 + float(seconds)
    return total


def venv_seconds(text: str) -> float | None:
    """The wall time of the by-hand virtualenv step, from the line the script prints around it."""
    found = re.search(r"^virtualenv-seconds ([\d.]+) ([\d.]+)$", text, re.M)
    return float(found.group(2)) - float(found.group(1)) if found else None


def by_hand(data: dict[str, Any], package: str, platform: str, image: str) -> tuple[float, float | None, float | None]:
    """What one person types: the sdist and its build requirements mounted read-only, unpacked in
    a --rm container with no network, then setup.py bdist_egg. Python 2.7 build images have no
    setuptools, so there the person makes a virtualenv first, as builder does."""
    spec = spec_of(data, package, platform)
    plat = next(p for p in data["platforms"] if p["name"] == platform)
    python = plat["python"]
    sdist = source_file(spec["sha256"])
    mounts = [f"{sdist}:/in/{sdist.name}:ro"]
    script = ["set -e", "cd /tmp", f"tar xzf /in/{sdist.name}", 'cd "$(ls -d */ | head -n 1)"']
    tools = [source_file(p["sha256"]) for p in spec.get("build_requires") or []]
    if tools:
        for tool in tools:
            mounts.append(f"{tool}:/tools/{tool.name}:ro")
            script.append(f"{python} -m zipfile -e /tools/{tool.name} /tmp/tools")
        script.append("export PYTHONPATH=/tmp/tools")
    virtualenv = next((t for t in plat.get("tools") or [] if t["name"] == "virtualenv"), None)
    if virtualenv:
        wheel = source_file(virtualenv["sha256"])
        mounts.append(f"{wheel}:/venv/{wheel.name}:ro")
        # Timed on its own (date, in the image): builder makes this once per platform instead.
        script += ["VE0=$(date +%s.%N)", f"{python} -m zipfile -e /venv/{wheel.name} /tmp/ve",
                   f"PYTHONPATH= {python} /tmp/ve/virtualenv.py --no-download -q /tmp/venv >/dev/null",
                   'echo "virtualenv-seconds $VE0 $(date +%s.%N)"', "PY=/tmp/venv/bin/python"]
    else:
        script.append(f"PY={python}")
    args = " ".join(spec.get("setup_args") or [])
    script += [f'"$PY" setup.py {args} bdist_egg --dist-dir /tmp/dist >/tmp/log 2>&1 || {{ tail -n 30 /tmp/log; exit 1; }}',
               "ls /tmp/dist/*.egg >/dev/null", "times"]
    argv = ["docker", "run", "--rm", "--network", "none", "--label", f"{LABEL}=by-hand"]
    for mount in mounts:
        argv += ["-v", mount]
    for key, value in (spec.get("env") or {}).items():
        argv += ["-e", f"{key}={value}"]
    argv += [image, "sh", "-c", "; ".join(script)]
    for _attempt in range(3):
        started = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        wall = time.monotonic() - started
        if done.returncode != 137:
            break
        # 137: SIGKILL from outside (another user of a shared engine cleaning up): run it again.
        say(f"  (the by-hand container of {package} on {platform} was killed from outside; again)")
    if done.returncode != 0:
        raise SystemExit(f"the by-hand build of {package} on {platform} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return wall, parse_times(done.stdout), venv_seconds(done.stdout)


def part_a(root: Path, data: dict[str, Any], reps: int, cells: list[tuple[str, str]]) -> list[dict[str, Any]]:
    rows = []
    for package, platform in cells:
        cell = f"{platform}/{canonical(package)}"
        builder_times: list[float] = []
        builder_walls: list[float] = []
        hand_times: list[float] = []
        hand_cpu: list[float] = []
        hand_venv: list[float] = []
        compile_cpu: list[float] = []
        breakdown: dict[str, Any] = {}
        for rep in range(reps):
            # Fresh folders each time: a cold cell, nothing published.
            matrix = project(root, f"a-{canonical(package)}-{platform}-{rep}", data, formats=["egg"])
            run = must(builder(matrix, "all", "-j1", "--cell", cell), f"builder all --cell {cell}")
            build, test, publish = (stage_json(matrix, cell, s) for s in ("build", "test", "publish"))
            builder_times.append(build["duration"] + test["duration"] + publish["duration"])
            builder_walls.append(run.wall)
            compile_cpu.append(sum(build["details"].get("timings", {}).get("compile_cpu", {}).values()))
            if not breakdown or builder_times[-1] == min(builder_times):
                breakdown = {"build": round(build["duration"], 3), "test": round(test["duration"], 3),
                             "publish": round(publish["duration"], 3), "build_steps": build["details"].get("timings"),
                             "test_steps": test["details"].get("timings"),
                             "test_guest": {k: v.get("timings") for k, v in test["details"].get("checks", {}).items()}}
            wall, cpu, venv = by_hand(data, package, platform, build["images"]["build"])
            hand_times.append(wall)
            if cpu is not None:
                hand_cpu.append(cpu)
            if venv is not None:
                hand_venv.append(venv)
            shutil.rmtree(matrix.parent, ignore_errors=True)
        best, hand = min(builder_times), min(hand_times)
        row = {"cell": cell, "builder_cell_s": round(best, 2), "by_hand_s": round(hand, 2),
               "ratio": round(best / hand, 3), "overhead_s": round(best - hand, 2),
               "overhead_pct": round(100 * (best - hand) / hand, 1),
               "builder_command_wall_s": round(min(builder_walls), 2),
               "by_hand_cpu_s": round(min(hand_cpu), 2) if hand_cpu else None,
               # Part of by_hand_s: the virtualenv a Python 2.7 build needs, which builder makes
               # once per platform (its prepared build environment) rather than per cell.
               "by_hand_virtualenv_s": round(min(hand_venv), 2) if hand_venv else None,
               "builder_compile_cpu_s": round(min(compile_cpu), 2),
               "all_builder_s": [round(t, 2) for t in builder_times], "all_by_hand_s": [round(t, 2) for t in hand_times],
               "breakdown": breakdown}
        say(f"  {cell}: builder {best:.2f} s, by hand {hand:.2f} s, overhead {best - hand:+.2f} s "
            f"({row['overhead_pct']:+.0f} %)")
        rows.append(row)
    return rows


# --- b, c, e. cold -j1, cold -j2, warm; the physical limit --------------------------------------

def part_bce(root: Path, data: dict[str, Any], select: list[str]) -> dict[str, Any]:
    one = project(root, "b-j1", data)
    two = project(root, "b-j2", data)
    j1 = must(builder(one, "all", "-j1", *select), "cold all -j1")
    say(f"  cold -j1: {j1.wall:.1f} s")
    shutil.rmtree(one.parent, ignore_errors=True)
    j2 = must(builder(two, "all", "-j2", *select), "cold all -j2")
    say(f"  cold -j2: {j2.wall:.1f} s")
    warm = must(builder(two, "all", "-j2", *select), "warm all")
    say(f"  warm: {warm.wall:.2f} s")
    if "up to date" not in warm.output:
        raise SystemExit("the warm run rebuilt cells: " + warm.output[-2000:])
    cores = os.cpu_count() or 1
    cells = cell_ids(two, *select)
    cpu = 0.0
    stage_sum = 0.0
    per_cell = {}
    for cell in cells:
        build = stage_json(two, cell, "build")
        test = stage_json(two, cell, "test")
        compile_cpu = sum(build["details"].get("timings", {}).get("compile_cpu", {}).values())
        cpu += compile_cpu
        stage_sum += build["duration"] + test["duration"]
        per_cell[cell] = {"compile_cpu_s": round(compile_cpu, 2), "build_s": round(build["duration"], 2),
                          "test_s": round(test["duration"], 2)}
    return {
        "cells": len(cells),
        "cold_j1_s": round(j1.wall, 2), "cold_j2_s": round(j2.wall, 2), "warm_s": round(warm.wall, 3),
        "j1_over_j2": round(j1.wall / j2.wall, 3), "warm_over_cold": round(warm.wall / j2.wall, 4),
        "cores": cores, "compile_cpu_s": round(cpu, 2), "limit_s": round(cpu / cores, 2),
        "wall_over_limit": round(j2.wall / (cpu / cores), 2) if cpu else None,
        "cell_stage_sum_s": round(stage_sum, 2), "per_cell": per_cell,
    }


# --- d. builder wheels vs cibuildwheel ----------------------------------------------------------

def cibuildwheel() -> Path:
    """cibuildwheel in its own virtualenv under the bench's folder, never in the project's."""
    venv = HOME / f"cibuildwheel-{CIBW_VERSION}"
    tool = venv / "bin" / "cibuildwheel"
    if not tool.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"cibuildwheel=={CIBW_VERSION}"], check=True,
                       capture_output=True)
    return tool


def cibw_image(build_image: str) -> str:
    """The debian12 build image, tagged with the interpreter links cibuildwheel expects in a
    manylinux image (its cp311 build Python and its cp39 utility Python) and nothing else."""
    tag = f"builder-bench/cibuildwheel:{build_image.split(':')[-1][:16]}"
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False).returncode == 0:
        return tag
    dockerfile = (
        f"FROM {build_image}\n"
        "RUN for v in cp311-cp311 cp39-cp39; do mkdir -p /opt/python/$v/bin"
        " && ln -s /usr/bin/python3 /opt/python/$v/bin/python && ln -s /usr/bin/pip3 /opt/python/$v/bin/pip; done\n"
    )
    subprocess.run(["docker", "build", "-q", "--label", f"{LABEL}=cibuildwheel", "-t", tag, "-"],
                   input=dockerfile, text=True, capture_output=True, check=True)
    return tag


def cibw_project(root: Path, data: dict[str, Any], package: str) -> tuple[Path, dict[str, str]]:
    """The sdist unpacked on the host (tar only: no package code runs here), its build
    requirements unzipped into the project, and the matrix's environment for the build."""
    spec = spec_of(data, package, "debian12")
    sdist = source_file(spec["sha256"])
    folder = root / f"cibw-{canonical(package)}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with tarfile.open(sdist) as tar:
        tar.extractall(folder, filter="data")
    src = next(p for p in folder.iterdir() if p.is_dir())
    env = {str(k): str(v) for k, v in (spec.get("env") or {}).items()}
    tools = [source_file(p["sha256"]) for p in spec.get("build_requires") or []]
    for tool in tools:
        with zipfile.ZipFile(tool) as wheel:
            wheel.extractall(src / "_bench_tools")
    if tools:
        env["PYTHONPATH"] = "/project/_bench_tools"
    return src, env


def part_d(root: Path, data: dict[str, Any], packages: list[str]) -> dict[str, Any]:
    matrix = project(root, "d-builder", data, formats=["wheel"])
    select = ["--platform", "debian12", "--package", ",".join(packages)]
    result: dict[str, Any] = {"packages": packages}
    j1 = must(builder(matrix, "all", "-j1", *select), "builder wheels -j1")
    build_image = stage_json(matrix, f"debian12/{canonical(packages[0])}", "build")["images"]["build"]
    shutil.rmtree(matrix.parent)
    matrix = project(root, "d-builder", data, formats=["wheel"])
    j2 = must(builder(matrix, "all", "-j2", *select), "builder wheels -j2")
    result.update({"builder_j1_s": round(j1.wall, 2), "builder_j2_s": round(j2.wall, 2)})
    say(f"  builder (wheels, built and tested): -j1 {j1.wall:.1f} s, -j2 {j2.wall:.1f} s")
    try:
        tool = cibuildwheel()
        image = cibw_image(build_image)
    except (subprocess.CalledProcessError, OSError) as exc:
        result["cibuildwheel_error"] = f"cibuildwheel {CIBW_VERSION} could not be set up: {exc}"
        say("  " + result["cibuildwheel_error"])
        return result
    total = 0.0
    per_package = {}
    wheels = root / "cibw-wheels"
    for package in packages:
        src, env = cibw_project(root, data, package)
        settings = {
            "CIBW_BUILD": "cp311-manylinux_x86_64", "CIBW_ARCHS": "x86_64",
            "CIBW_MANYLINUX_X86_64_IMAGE": image,
            "CIBW_CONTAINER_ENGINE": "docker; create_args: --network=none; disable_host_mount: true",
            "CIBW_BUILD_FRONTEND": "pip; args: --no-build-isolation --no-index",
            "CIBW_REPAIR_WHEEL_COMMAND": "", "CIBW_TEST_COMMAND": "",
            "CIBW_ENVIRONMENT": " ".join(f'{k}="{v}"' for k, v in sorted(env.items())),
        }
        for _attempt in range(2):
            started = time.monotonic()
            # cibuildwheel wants the project inside its working directory.
            done = subprocess.run([str(tool), "--platform", "linux", "--output-dir", str(wheels), "."], cwd=src,
                                  env={**os.environ, **settings}, capture_output=True, text=True, check=False)
            wall = time.monotonic() - started
            if done.returncode == 0:
                break
            # On a shared engine its container has been seen removed from outside mid-build.
            say(f"  (cibuildwheel failed on {package}, exit {done.returncode}; once more)")
            result.setdefault("cibuildwheel_retries", []).append(
                f"{package}: " + " ".join((done.stdout + done.stderr).strip().splitlines()[-2:]))
        if done.returncode != 0:
            result["cibuildwheel_error"] = f"cibuildwheel failed on {package} (exit {done.returncode}): " + \
                " ".join((done.stdout + done.stderr).strip().splitlines()[-3:])
            say("  " + result["cibuildwheel_error"])
            return result
        per_package[package] = round(wall, 2)
        total += wall
    made = sorted(p.name for p in wheels.glob("*.whl"))
    # The same wheels: the C packages' with their extension compiled in, as builder's are.
    compiled = {}
    for wheel in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(wheel) as zf:
            compiled[wheel.name] = sorted(n for n in zf.namelist() if n.endswith(".so"))
    result["cibuildwheel_compiled_modules"] = compiled
    result.update({"cibuildwheel_s": round(total, 2), "cibuildwheel_per_package_s": per_package,
                   "cibuildwheel_wheels": made, "cibuildwheel_image": image,
                   "j1_over_cibuildwheel": round(j1.wall / total, 3), "j2_over_cibuildwheel": round(j2.wall / total, 3)})
    say(f"  cibuildwheel (built, not tested): {total:.1f} s for {len(made)} wheels")
    return result


# --- the table ----------------------------------------------------------------------------------

def table(results: dict[str, Any]) -> str:
    lines = [f"{'measure':<46} {'figures':<40} {'ratio':>8}", "-" * 96]

    def row(name: str, figures: str, ratio: str) -> None:
        lines.append(f"{name:<46} {figures:<40} {ratio:>8}")

    for cell in results.get("by_hand", []):
        row(f"a. {cell['cell']} cell ÷ by hand (egg)",
            f"{cell['builder_cell_s']:.2f} s vs {cell['by_hand_s']:.2f} s; {cell['overhead_s']:+.2f} s "
            f"({cell['overhead_pct']:+.0f} %)", f"{cell['ratio']:.2f}")
        venv = cell.get("by_hand_virtualenv_s")
        if venv:
            bare = cell["by_hand_s"] - venv
            row("   … ÷ by hand less its virtualenv step", f"{cell['builder_cell_s']:.2f} s vs {bare:.2f} s "
                f"(by hand less {venv:.2f} s)", f"{cell['builder_cell_s'] / bare:.2f}")
    b = results.get("shipped")
    if b:
        row(f"b. cold -j1 ÷ cold -j2 ({b['cells']} cells)", f"{b['cold_j1_s']:.1f} s vs {b['cold_j2_s']:.1f} s",
            f"{b['j1_over_j2']:.2f}")
        row("c. warm ÷ cold (-j2)", f"{b['warm_s']:.2f} s vs {b['cold_j2_s']:.1f} s", f"{b['warm_over_cold']:.4f}")
        if b.get("wall_over_limit"):
            row(f"e. cold -j2 wall ÷ (compile CPU ÷ {b['cores']} cores)",
                f"{b['cold_j2_s']:.1f} s vs {b['compile_cpu_s']:.1f}/{b['cores']} = {b['limit_s']:.1f} s",
                f"{b['wall_over_limit']:.2f}")
    d = results.get("cibuildwheel")
    if d:
        if "cibuildwheel_s" in d:
            row(f"d. builder -j1 wheels ÷ cibuildwheel ({len(d['packages'])})",
                f"{d['builder_j1_s']:.1f} s vs {d['cibuildwheel_s']:.1f} s", f"{d['j1_over_cibuildwheel']:.2f}")
            row("d. builder -j2 wheels ÷ cibuildwheel", f"{d['builder_j2_s']:.1f} s vs {d['cibuildwheel_s']:.1f} s",
                f"{d['j2_over_cibuildwheel']:.2f}")
        else:
            row("d. builder wheels ÷ cibuildwheel", "cibuildwheel did not run (see JSON)", "-")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="one repetition, debian12 only for b-e (a few minutes instead of ~15)")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "latest.json",
                        help="where to write the figures (default: bench/results/latest.json)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project folders")
    parser.add_argument("--only", choices=("a", "bce", "d"), action="append", help="run only these parts")
    args = parser.parse_args(argv)
    parts = set(args.only or ("a", "bce", "d"))
    data = load_shipped()
    root = Path(tempfile.mkdtemp(prefix="builder-bench-"))
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "quick": args.quick,
        "cores": os.cpu_count(), "load_before": os.getloadavg(),
    }
    try:
        say("preparing (not timed): sources, images, and each platform's prepared test environment")
        # All three are made once per machine and set of inputs, and reused by every later run:
        # "cold" below means they exist and nothing is published.
        prepare = project(root, "prepare", data)
        must(builder(prepare, "images"), "builder images")
        must(builder(prepare, "all", "--package", "six"), "builder all --package six (warm-up)")
        if "a" in parts:
            say("a. builder cell vs the same compile by hand")
            cells = [c for c in BY_HAND_CELLS if not args.quick or c[1] == "debian12"]
            results["by_hand"] = part_a(root, data, 1 if args.quick else 3, cells)
        if "bce" in parts:
            say("b, c, e. the shipped matrix: cold -j1, cold -j2, warm")
            results["shipped"] = part_bce(root, data, ["--platform", "debian12"] if args.quick else [])
        if "d" in parts:
            say("d. builder wheels vs cibuildwheel (debian12)")
            results["cibuildwheel"] = part_d(root, data, WHEEL_PACKAGES[:2] if args.quick else WHEEL_PACKAGES)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    results["load_after"] = os.getloadavg()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    say("")
    say(table(results))
    say(f"\n(load average before/after: {results['load_before'][0]:.1f}/{results['load_after'][0]:.1f}; "
        f"figures in {args.json})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

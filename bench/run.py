"""builder's benchmark: whole commands, side by side on the same images and packages.

    python bench/run.py [--quick] [--reps N] [--only a|bce|d] [--cells C,…] [--baseline CHECKOUT]
                        [--json out.json] [--keep]
    python bench/run.py --large [--reps N] [--json out.json]  # bench/large.yaml, cold and warm
    python bench/run.py --table bench/results/FILE.json     # the README's table of a results file

Every figure is the wall time of a whole command, as a user waits for it (process start, loading,
planning, the work, the reports, the removal of its guests), measured on this machine with images
present and sources cached:

  a. `python -m builder all --cell C --force -j1` (build + test + publish of an egg) against the
     same compile by hand (`docker run --rm --network none <build image> … python setup.py
     bdist_egg` on the same verified sdist, with the same build requirements and environment),
     for PyYAML (libyaml), simplejson and six on debian12 and debian11-py27. The difference,
     pair by pair, is builder's fixed cost per cell. On debian11-py27 the by-hand side less the
     virtualenv it must make (builder makes it once per platform) is the bare compile;
  b. cold `all -j1` and cold `all -j2` on the shipped matrix (fresh output and work folders);
  c. a warm `all` (nothing changed) after each cold `-j2`;
  d. builder `-j1` and `-j2`, wheels only (built *and* tested), against cibuildwheel (serial)
     building the same wheels in the same local build image (a tag of it with the /opt/python
     links cibuildwheel looks for);
  e. the physical limit: the compile steps' CPU time summed over a cold run's cells ÷ cores,
     beside the cold `-j2` wall time.

`--large` runs instead (and only) the large matrix, bench/large.yaml: real C, C++ and Cython
packages with system libraries on debian11-py27 and debian12. A cold `all -j2` of it in a fresh
project folder (images present, sources cached, each platform's prepared environments made), a
warm one after it, and a cold `all -j2` of the shipped matrix's cells on the same two platforms
beside it: walls, per-cell medians from builder's own stage results, peak memory of builder's
process tree, the share of the cells' time that is compiling, and how the cold wall grows with
cells ÷ jobs from the shipped matrix to the large one.

The machine may be shared with other people's work, so figures are noisy: the sides of each
comparison are interleaved repetition by repetition (the order rotating), each figure is the
median with its min and max, and the load average is recorded around every repetition. All of
it, every repetition included, goes to the JSON (default bench/results/latest.json); the README
quotes a committed one, bench/results/<date>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "matrix.yaml"
LARGE = REPO / "bench" / "large.yaml"
LARGE_PLATFORMS = ["debian11-py27", "debian12"]
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

def load_shipped(path: Path = SHIPPED) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())  # anchors resolved: a plain tree to edit
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


def builder(matrix: Path, *args: str, repo: Path = REPO) -> Timed:
    """`python -m builder ARGS` of the checkout `repo` (this one unless --baseline says another)."""
    env = {**os.environ, "PYTHONPATH": str(repo), "COLUMNS": "200"}
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


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float], digits: int = 2) -> dict[str, Any]:
    """What the README quotes of a list of walls: the median with the min and max beside it."""
    return {"median": round(median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "all": [round(v, digits + 1) for v in values]}


def load_now() -> float:
    return round(os.getloadavg()[0], 2)


def _builder_cell(matrix: Path, cell: str, repo: Path = REPO, side: str = "builder") -> dict[str, Any]:
    """One whole `builder all --cell C --force -j1`, and where its time went by its stage results."""
    run = must(builder(matrix, "all", "-j1", "--force", "--cell", cell, repo=repo), f"{side} all --cell {cell} --force")
    build, test, publish = (stage_json(matrix, cell, s) for s in ("build", "test", "publish"))
    stages = build["duration"] + test["duration"] + publish["duration"]
    return {
        f"{side}_s": round(run.wall, 3), f"{side}_stages_s": round(stages, 3),
        f"{side}_outside_stages_s": round(run.wall - stages, 3),
        f"{side}_steps": {
            "build_s": round(build["duration"], 3), "test_s": round(test["duration"], 3),
            "publish_s": round(publish["duration"], 3),
            "compile_cpu_s": round(sum(build["details"].get("timings", {}).get("compile_cpu", {}).values()), 3),
            "build": build["details"].get("timings"), "test": test["details"].get("timings"),
            "test_guest": {k: v.get("timings") for k, v in test["details"].get("checks", {}).items()},
        },
    }


def _by_hand_cell(data: dict[str, Any], package: str, platform: str, image: str) -> dict[str, Any]:
    wall, cpu, venv = by_hand(data, package, platform, image)
    return {"by_hand_s": round(wall, 3), "by_hand_cpu_s": cpu, "by_hand_virtualenv_s": venv}


def part_a(root: Path, data: dict[str, Any], reps: int, cells: list[tuple[str, str]],
           baseline: Path | None = None) -> list[dict[str, Any]]:
    """Both sides as whole commands, as a user waits for them: `python -m builder all --cell C
    --force -j1` (process start, loading, planning, build + test + publish, the reports and the
    removal of its guests) against the by-hand `docker run --rm` compile. The pairs are
    interleaved, and every other pair runs the by-hand side first, so a burst of load from
    other users of the machine falls on both sides alike."""
    rows = []
    for package, platform in cells:
        cell = f"{platform}/{canonical(package)}"
        matrix = project(root, f"a-{canonical(package)}-{platform}", data, formats=["egg"])
        # Not timed: the platform's prepared environments and a first publish exist, as on any
        # machine after its first run; every timed run then rebuilds the cell (--force).
        must(builder(matrix, "all", "-j1", "--cell", cell), f"builder all --cell {cell}")
        old = project(root, f"a-{canonical(package)}-{platform}-baseline", data, formats=["egg"]) if baseline else None
        if old is not None and baseline is not None:
            must(builder(old, "all", "-j1", "--cell", cell, repo=baseline), f"baseline all --cell {cell}")
        sides = ["builder", "by_hand"] + (["baseline"] if baseline else [])
        build_image = stage_json(matrix, cell, "build")["images"]["build"]
        samples: list[dict[str, Any]] = []
        for rep in range(reps):
            sample: dict[str, Any] = {"rep": rep, "load_before": load_now()}

            sample["order"] = order = sides[rep % len(sides):] + sides[:rep % len(sides)]
            for side in order:
                if side == "builder":
                    sample.update(_builder_cell(matrix, cell))
                elif side == "baseline" and old is not None and baseline is not None:
                    sample.update(_builder_cell(old, cell, repo=baseline, side="baseline"))
                else:
                    sample.update(_by_hand_cell(data, package, platform, build_image))
            sample["load_after"] = load_now()
            samples.append(sample)
        for folder in (matrix, old):
            if folder is not None:
                shutil.rmtree(folder.parent, ignore_errors=True)
        walls = [s["builder_s"] for s in samples]
        hands = [s["by_hand_s"] for s in samples]
        # The by-hand virtualenv (Python 2.7 build images have no setuptools) is made once per
        # platform by builder: the fair bare compile is the by-hand wall less that step.
        venvs = [s["by_hand_virtualenv_s"] for s in samples if s["by_hand_virtualenv_s"] is not None]
        bare = [s["by_hand_s"] - (s["by_hand_virtualenv_s"] or 0.0) for s in samples]
        row = {
            "cell": cell, "reps": reps, "builder_s": spread(walls), "by_hand_s": spread(hands),
            "by_hand_virtualenv_s": spread(venvs) if venvs else None,
            "by_hand_bare_s": spread(bare),
            # builder - by hand (less its virtualenv where it has one), pair by pair: the fixed cost.
            "overhead_s": spread([w - b for w, b in zip(walls, bare, strict=True)]),
            "builder_outside_stages_s": spread([s["builder_outside_stages_s"] for s in samples]),
            "samples": samples,
        }
        if baseline:
            row["baseline"] = str(baseline)
            row["baseline_s"] = spread([s["baseline_s"] for s in samples])
            row["baseline_overhead_s"] = spread([s["baseline_s"] - b for s, b in zip(samples, bare, strict=True)])
        o = row["overhead_s"]
        say(f"  {cell}: builder {row['builder_s']['median']:.2f} s, by hand {row['by_hand_bare_s']['median']:.2f} s"
            f"{' (less its virtualenv)' if venvs else ''}; overhead median {o['median']:+.2f} s "
            f"({o['min']:+.2f} to {o['max']:+.2f})"
            + (f"; baseline overhead {row['baseline_overhead_s']['median']:+.2f} s" if baseline else ""))
        rows.append(row)
    return rows


# --- b, c, e. cold -j1, cold -j2, warm; the physical limit --------------------------------------

def part_bce(root: Path, data: dict[str, Any], select: list[str], reps: int) -> dict[str, Any]:
    """Cold -j1 and cold -j2, interleaved (every other repetition starts with -j2), each in fresh
    output and work folders; a warm run after each cold -j2; compile CPU from each -j2 run."""
    cores = os.cpu_count() or 1
    samples: list[dict[str, Any]] = []
    for rep in range(reps):
        sample: dict[str, Any] = {"rep": rep, "load_before": load_now()}
        for jobs in ((1, 2) if rep % 2 == 0 else (2, 1)):
            matrix = project(root, f"b-j{jobs}", data)
            cold = must(builder(matrix, "all", f"-j{jobs}", *select), f"cold all -j{jobs}")
            sample[f"cold_j{jobs}_s"] = round(cold.wall, 3)
            say(f"  rep {rep + 1}: cold -j{jobs}: {cold.wall:.1f} s")
            if jobs == 2:
                warm = must(builder(matrix, "all", "-j2", *select), "warm all")
                if "up to date" not in warm.output:
                    raise SystemExit("the warm run rebuilt cells: " + warm.output[-2000:])
                sample["warm_s"] = round(warm.wall, 3)
                cells = cell_ids(matrix, *select)
                per_cell = {}
                for cell in cells:
                    build, test = stage_json(matrix, cell, "build"), stage_json(matrix, cell, "test")
                    per_cell[cell] = {
                        "compile_cpu_s": round(sum(build["details"].get("timings", {}).get("compile_cpu", {}).values()), 3),
                        "build_s": round(build["duration"], 3), "test_s": round(test["duration"], 3)}
                sample["cells"] = len(cells)
                sample["compile_cpu_s"] = round(sum(c["compile_cpu_s"] for c in per_cell.values()), 3)
                sample["per_cell"] = per_cell
            shutil.rmtree(matrix.parent, ignore_errors=True)
        sample["load_after"] = load_now()
        samples.append(sample)
    j1 = [s["cold_j1_s"] for s in samples]
    j2 = [s["cold_j2_s"] for s in samples]
    warm = [s["warm_s"] for s in samples]
    cpu = [s["compile_cpu_s"] for s in samples]
    limit = median(cpu) / cores
    return {
        "reps": reps, "cells": samples[0]["cells"], "cores": cores,
        "cold_j1_s": spread(j1), "cold_j2_s": spread(j2), "warm_s": spread(warm, 3),
        "j1_over_j2": round(median(j1) / median(j2), 3), "warm_over_cold": round(median(warm) / median(j2), 4),
        "compile_cpu_s": spread(cpu), "limit_s": round(limit, 2),
        "wall_over_limit": round(median(j2) / limit, 2) if limit else None,
        "samples": samples,
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


def _cibuildwheel_once(root: Path, data: dict[str, Any], packages: list[str], tool: Path, image: str,
                       result: dict[str, Any]) -> tuple[float, dict[str, float], Path] | None:
    """cibuildwheel over `packages`, one after the other as it works: (total wall, per package,
    the wheels' folder), or None with the reason in result."""
    total = 0.0
    per_package = {}
    wheels = root / "cibw-wheels"
    shutil.rmtree(wheels, ignore_errors=True)
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
            return None
        per_package[package] = round(wall, 3)
        total += wall
    return total, per_package, wheels


def part_d(root: Path, data: dict[str, Any], packages: list[str], reps: int) -> dict[str, Any]:
    """builder -j1 and -j2 (wheels built *and* tested) and cibuildwheel (serial, built only),
    interleaved: each repetition runs the three in a rotated order, builder in fresh folders."""
    select = ["--platform", "debian12", "--package", ",".join(packages)]
    result: dict[str, Any] = {"packages": packages, "reps": reps}
    matrix = project(root, "d-builder", data, formats=["wheel"])
    must(builder(matrix, "all", "-j2", *select), "builder wheels (warm-up)")
    build_image = stage_json(matrix, f"debian12/{canonical(packages[0])}", "build")["images"]["build"]
    try:
        tool = cibuildwheel()
        image = cibw_image(build_image)
    except (subprocess.CalledProcessError, OSError) as exc:
        tool = None
        result["cibuildwheel_error"] = f"cibuildwheel {CIBW_VERSION} could not be set up: {exc}"
        say("  " + result["cibuildwheel_error"])
    samples: list[dict[str, Any]] = []
    sides = ["j1", "j2", "cibuildwheel"] if tool else ["j1", "j2"]
    for rep in range(reps):
        sample: dict[str, Any] = {"rep": rep, "load_before": load_now()}
        order = sides[rep % len(sides):] + sides[:rep % len(sides)]
        sample["order"] = order
        for side in order:
            if side == "cibuildwheel":
                assert tool is not None
                done = _cibuildwheel_once(root, data, packages, tool, image, result)
                if done is None:
                    return result
                sample["cibuildwheel_s"], sample["cibuildwheel_per_package_s"], wheels = round(done[0], 3), done[1], done[2]
            else:
                matrix = project(root, "d-builder", data, formats=["wheel"])
                run = must(builder(matrix, "all", f"-{side}", *select), f"builder wheels -{side}")
                sample[f"builder_{side}_s"] = round(run.wall, 3)
        sample["load_after"] = load_now()
        say(f"  rep {rep + 1}: " + ", ".join(f"{k} {v:.1f} s" for k, v in sample.items() if isinstance(v, float)))
        samples.append(sample)
    shutil.rmtree(matrix.parent, ignore_errors=True)
    result["samples"] = samples
    j1, j2 = [s["builder_j1_s"] for s in samples], [s["builder_j2_s"] for s in samples]
    result.update({"builder_j1_s": spread(j1), "builder_j2_s": spread(j2)})
    if tool:
        cibw = [s["cibuildwheel_s"] for s in samples]
        # The same wheels: the C packages' with their extension compiled in, as builder's are.
        compiled = {}
        for wheel in sorted(wheels.glob("*.whl")):
            with zipfile.ZipFile(wheel) as zf:
                compiled[wheel.name] = sorted(n for n in zf.namelist() if n.endswith(".so"))
        result.update({"cibuildwheel_s": spread(cibw), "cibuildwheel_compiled_modules": compiled,
                       "cibuildwheel_wheels": sorted(compiled), "cibuildwheel_image": image,
                       "j1_over_cibuildwheel": round(median(j1) / median(cibw), 3),
                       "j2_over_cibuildwheel": round(median(j2) / median(cibw), 3)})
    return result


# --- the large matrix -----------------------------------------------------------------------------

class TreeMemory(threading.Thread):
    """The resident memory of a process and all its descendants, summed, sampled from /proc every
    `every` seconds while it runs; the peak is kept. The guests' memory is not in it: a container's
    processes are the engine's children, not builder's."""

    def __init__(self, pid: int, every: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.peak_kb = 0
        self.peak_processes = 0
        self.samples = 0
        self._done = threading.Event()

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            # The command name is in parentheses and may hold spaces: the fields follow the last ")".
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
        tree, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(children.get(pid, []))
        return tree

    def _rss_kb(self, pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0  # gone, or a kernel thread

    def run(self) -> None:
        while not self._done.is_set():
            tree = self._tree()
            self.peak_kb = max(self.peak_kb, sum(self._rss_kb(pid) for pid in tree))
            self.peak_processes = max(self.peak_processes, len(tree))
            self.samples += 1
            self._done.wait(self.every)

    def stop(self) -> None:
        self._done.set()
        self.join()


def builder_measured(matrix: Path, *args: str) -> tuple[Timed, dict[str, Any]]:
    """`python -m builder ARGS` as in builder(), with its memory: the peak of its process tree's
    summed resident memory (sampled) and the largest maximum resident size of any one process of
    it (the kernel's own figure, from wait4)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    with tempfile.TemporaryFile("w+") as out:
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "builder", *args, "--matrix", str(matrix)], cwd=matrix.parent,
                                env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        sampler = TreeMemory(proc.pid)
        sampler.start()
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.stop()
        out.seek(0)
        text = out.read()
    memory = {"tree_peak_rss_mb": round(sampler.peak_kb / 1024, 1),
              "largest_process_maxrss_mb": round(usage.ru_maxrss / 1024, 1),
              "tree_peak_processes": sampler.peak_processes, "samples": sampler.samples,
              "what": "builder's process and its children on the host (it drives the engine through its API); "
                      "not the guests' memory, which the engine's containers hold"}
    return Timed(wall, proc.returncode, text), memory


def cell_figures(matrix: Path, cell: str) -> dict[str, Any]:
    """Where one cell's time went, by its own stage results: its build and test (its own time),
    and of them the compile steps (each format's build command in the guest: wall and CPU). Its
    publish_s is its platform's: a run publishes each platform's cells together, at its end, and
    every cell of it records that one publish's duration."""
    build, test, publish = (stage_json(matrix, cell, s) for s in ("build", "test", "publish"))
    timings = build["details"].get("timings", {})
    cpu = timings.get("compile_cpu", {})
    guest = timings.get("guest", {})
    compile_wall = sum(guest.get(fmt, 0.0) for fmt in cpu)
    stages = build["duration"] + test["duration"]
    return {"build_s": round(build["duration"], 3), "test_s": round(test["duration"], 3),
            "publish_s": round(publish["duration"], 3), "cell_s": round(stages, 3),
            "compile_wall_s": round(compile_wall, 3), "compile_cpu_s": round(sum(cpu.values()), 3),
            "around_compile_s": round(stages - compile_wall, 3)}


def cold_and_warm(root: Path, name: str, data: dict[str, Any], select: list[str], jobs: int,
                  warm: bool) -> dict[str, Any]:
    """A cold `all -jN` in a fresh project folder, its memory, every cell's figures, and a warm
    `all` after it when asked."""
    matrix = project(root, name, data)
    cold, memory = builder_measured(matrix, "all", f"-j{jobs}", *select)
    must(cold, f"cold all -j{jobs} ({name})")
    cells = cell_ids(matrix, *select)
    per_cell = {cell: cell_figures(matrix, cell) for cell in cells}
    run: dict[str, Any] = {"cells": len(cells), "jobs": jobs, "cold_s": round(cold.wall, 3), "memory": memory,
                           "per_cell": per_cell}
    say(f"  {name}: cold -j{jobs}, {len(cells)} cells: {cold.wall:.1f} s; builder's tree peaked at "
        f"{memory['tree_peak_rss_mb']:.0f} MB")
    if warm:
        again, warm_memory = builder_measured(matrix, "all", f"-j{jobs}", *select)
        must(again, f"warm all ({name})")
        if "up to date" not in again.output:
            raise SystemExit(f"the warm run of {name} rebuilt cells: " + again.output[-2000:])
        run.update({"warm_s": round(again.wall, 3), "warm_memory": warm_memory})
        say(f"  {name}: warm: {again.wall:.2f} s")
    shutil.rmtree(matrix.parent, ignore_errors=True)
    return run


def summarise_cells(per_cell: dict[str, dict[str, Any]], wall: float, jobs: int) -> dict[str, Any]:
    """Per-cell medians, by platform too, and the share of the cells' time that is compiling."""
    def medians(cells: list[dict[str, Any]]) -> dict[str, float]:
        keys = ("cell_s", "build_s", "test_s", "compile_wall_s", "compile_cpu_s", "around_compile_s")
        return {k: round(median([c[k] for c in cells]), 2) for k in keys}

    cells = list(per_cell.values())
    by_platform = {}
    for platform in sorted({c.split("/")[0] for c in per_cell}):
        mine = [v for k, v in per_cell.items() if k.split("/")[0] == platform]
        by_platform[platform] = {"cells": len(mine), **medians(mine), "publish_s": round(mine[0]["publish_s"], 2)}
    total = sum(c["cell_s"] for c in cells)
    publishing = sum(p["publish_s"] for p in by_platform.values())
    compiling = sum(c["compile_wall_s"] for c in cells)
    slowest = max(per_cell, key=lambda k: per_cell[k]["cell_s"])
    return {
        "median": medians(cells), "by_platform": by_platform,
        "slowest": {"cell": slowest, **per_cell[slowest]},
        "cells_s": round(total, 1), "compile_wall_s": round(compiling, 1),
        "compile_cpu_s": round(sum(c["compile_cpu_s"] for c in cells), 1),
        "publish_s": round(publishing, 1),
        # Of the cells' own time (build and test), the share in the compile steps; the rest is
        # builder's work around them: guests started and stopped, copies, the unpacking of the
        # sdist and the prepared environments, the whole test in the runtime image.
        "compile_share": round(compiling / total, 3) if total else None,
        # Of the run's wall × jobs (the slots it had), the share no cell's build or test was in:
        # loading and planning, the images' and sources' checks, publishing (one at a time),
        # the reports, and slots idle while the last cells ran.
        "outside_cells_share": round(1 - total / (wall * jobs), 3) if wall else None,
    }


def part_large(root: Path, reps: int, jobs: int = 2) -> dict[str, Any]:
    """The large matrix cold and warm, and the shipped matrix's cells on the same platforms cold,
    interleaved repetition by repetition (the order alternating)."""
    large, shipped = load_shipped(LARGE), load_shipped()
    select = ["--platform", ",".join(LARGE_PLATFORMS)]
    samples: list[dict[str, Any]] = []
    for rep in range(reps):
        sample: dict[str, Any] = {"rep": rep, "load_before": load_now()}
        for side in (("large", "shipped") if rep % 2 == 0 else ("shipped", "large")):
            data = large if side == "large" else shipped
            run = cold_and_warm(root, f"{side}-j{jobs}", data, select, jobs, warm=side == "large")
            run["summary"] = summarise_cells(run["per_cell"], run["cold_s"], jobs)
            sample[side] = run
        sample["load_after"] = load_now()
        samples.append(sample)
    first = samples[0]
    cold = [s["large"]["cold_s"] for s in samples]
    warm = [s["large"]["warm_s"] for s in samples]
    base = [s["shipped"]["cold_s"] for s in samples]
    cells, base_cells = first["large"]["cells"], first["shipped"]["cells"]
    summary = first["large"]["summary"] if reps == 1 else None
    work = median([s["large"]["summary"]["cells_s"] for s in samples])
    base_work = median([s["shipped"]["summary"]["cells_s"] for s in samples])
    return {
        "matrix": str(LARGE.relative_to(REPO)), "platforms": LARGE_PLATFORMS, "jobs": jobs, "reps": reps,
        "cores": os.cpu_count(), "packages": len(large["packages"]), "cells": cells,
        "cold_s": spread(cold, 1), "warm_s": spread(warm, 3), "warm_over_cold": round(median(warm) / median(cold), 4),
        "per_cell": summary or {"by_rep": [s["large"]["summary"] for s in samples]},
        "memory_cold": [s["large"]["memory"] for s in samples],
        "memory_warm": [s["large"]["warm_memory"] for s in samples],
        "shipped": {"cells": base_cells, "cold_s": spread(base, 1),
                    "per_cell": first["shipped"]["summary"] if reps == 1 else None},
        # Linear in cells ÷ jobs: the cold walls' ratio beside the cells' ratio (same jobs), and
        # the wall per cell and job slot of each; the cells' own time (their stages summed) says
        # how much heavier the large matrix's cells are than the shipped ones.
        "growth": {
            "cells_ratio": round(cells / base_cells, 2),
            "cold_ratio": round(median(cold) / median(base), 2),
            "work_ratio": round(work / base_work, 2),
            "wall_per_cell_slot_s": {"shipped": round(median(base) * jobs / base_cells, 2),
                                     "large": round(median(cold) * jobs / cells, 2)},
            "wall_per_cell_second": {"shipped": round(median(base) / base_work, 3),
                                     "large": round(median(cold) / work, 3)},
        },
        "samples": samples,
    }


def large_table(results: dict[str, Any]) -> list[str]:
    """The README's rows for the large matrix."""
    g = results
    s = g["shipped"]
    pc = g["per_cell"]
    lines = [f"| large: cold `all -j{g['jobs']}` ({g['packages']} packages, {g['cells']} cells) | "
             f"{_range(g['cold_s'], digits=1)} | - | `large.cold_s` |",
             f"| large: warm `all` ÷ cold | {_range(g['warm_s'])} vs {g['cold_s']['median']:.1f} s | "
             f"{g['warm_over_cold']:.4f} | `large.warm_s` |"]
    if "median" in pc:
        m = pc["median"]
        lines += [
            f"| large: per cell, median (build + test) | {m['cell_s']:.2f} s ({m['build_s']:.2f} + "
            f"{m['test_s']:.2f} s); compile steps {m['compile_wall_s']:.2f} s wall, "
            f"{m['compile_cpu_s']:.2f} s CPU | - | `large.per_cell.median` |",
            f"| large: compile share of the cells' build + test time | {pc['compile_wall_s']:.0f} s of "
            f"{pc['cells_s']:.0f} s (the rest builder's work around the compile) | {pc['compile_share']:.2f} | "
            "`large.per_cell` |",
            f"| large: outside any cell's build or test (of wall × jobs) | planning, checks, publishing "
            f"({pc['publish_s']:.1f} s, once per platform), reports, idle slots at the end | "
            f"{pc['outside_cells_share']:.3f} | `large.per_cell.outside_cells_share` |",
            f"| large: slowest cell | `{pc['slowest']['cell']}` {pc['slowest']['cell_s']:.1f} s "
            f"(compile {pc['slowest']['compile_wall_s']:.1f} s) | - | `large.per_cell.slowest` |"]
    mem = g["memory_cold"][0]
    lines.append(f"| large: peak memory of builder's process tree (host side, cold) | "
                 f"{mem['tree_peak_rss_mb']:.0f} MB summed; largest process {mem['largest_process_maxrss_mb']:.0f} MB "
                 f"| - | `large.memory_cold` |")
    gr = g["growth"]
    lines.append(f"| growth: cold large ÷ cold shipped ({s['cells']} cells, same platforms, `-j{g['jobs']}`) | "
                 f"{g['cold_s']['median']:.1f} s vs {_range(s['cold_s'], digits=1)}; cells ×{gr['cells_ratio']:.2f}, "
                 f"cells' own time ×{gr['work_ratio']:.2f} | {gr['cold_ratio']:.2f} | `large.growth` |")
    return lines


# --- the table ----------------------------------------------------------------------------------

def _range(figure: dict[str, Any], unit: str = "s", digits: int = 2, sign: bool = False) -> str:
    fmt = f"{{:{'+' if sign else ''}.{digits}f}}"
    return (f"{fmt.format(figure['median'])} {unit} ({fmt.format(figure['min'])}–{fmt.format(figure['max'])})")


def table(results: dict[str, Any]) -> str:
    """The README's table, in Markdown, from a results file: every figure is a median over the
    repetitions with its min–max, and each row names the key of the JSON it comes from."""
    lines = ["| measure | figures: median (min–max) | ratio of medians | JSON |", "|---|---|---|---|"]

    def row(name: str, figures: str, ratio: str, key: str) -> None:
        lines.append(f"| {name} | {figures} | {ratio} | `{key}` |")

    for n, cell in enumerate(results.get("by_hand", [])):
        bare = "by hand less its virtualenv" if cell.get("by_hand_virtualenv_s") else "by hand"
        hand = cell["by_hand_bare_s"]
        row(f"a. `{cell['cell']}` builder ÷ {bare} (egg, {cell['reps']} pairs)",
            f"{_range(cell['builder_s'])} vs {_range(hand)}; overhead {_range(cell['overhead_s'], sign=True)}",
            f"{cell['builder_s']['median'] / hand['median']:.2f}", f"by_hand[{n}]")
        if cell.get("baseline_s"):
            row(f"   … the baseline checkout (`{cell['baseline']}`), interleaved with them",
                f"{_range(cell['baseline_s'])}; overhead {_range(cell['baseline_overhead_s'], sign=True)}",
                f"{cell['baseline_s']['median'] / hand['median']:.2f}", f"by_hand[{n}].baseline_s")
    b = results.get("shipped")
    if b:
        row(f"b. cold `-j1` ÷ cold `-j2` ({b['cells']} cells, {b['reps']} each)",
            f"{_range(b['cold_j1_s'], digits=1)} vs {_range(b['cold_j2_s'], digits=1)}", f"{b['j1_over_j2']:.2f}",
            "shipped")
        row("c. warm ÷ cold `-j2`", f"{_range(b['warm_s'])} vs {b['cold_j2_s']['median']:.1f} s",
            f"{b['warm_over_cold']:.3f}", "shipped")
        if b.get("wall_over_limit"):
            row(f"e. cold `-j2` ÷ (compile CPU ÷ {b['cores']} cores)",
                f"{b['cold_j2_s']['median']:.1f} s vs {b['compile_cpu_s']['median']:.1f} s ÷ {b['cores']} = {b['limit_s']:.1f} s",
                f"{b['wall_over_limit']:.2f}", "shipped")
    d = results.get("cibuildwheel")
    if d and "builder_j1_s" in d:
        if "cibuildwheel_s" in d:
            row(f"d. builder `-j1` ÷ cibuildwheel (serial) ({len(d['packages'])} wheels, {d['reps']} each)",
                f"{_range(d['builder_j1_s'], digits=1)} vs {_range(d['cibuildwheel_s'], digits=1)}",
                f"{d['j1_over_cibuildwheel']:.2f}", "cibuildwheel")
            row("d. builder `-j2` ÷ cibuildwheel",
                f"{_range(d['builder_j2_s'], digits=1)} vs {d['cibuildwheel_s']['median']:.1f} s",
                f"{d['j2_over_cibuildwheel']:.2f}", "cibuildwheel")
        else:
            row("d. builder wheels ÷ cibuildwheel", "cibuildwheel did not run (see the JSON)", "-", "cibuildwheel")
    if results.get("large"):
        lines += large_table(results["large"])
    return "\n".join(lines)


def git_commit() -> str:
    """The last commit that changed builder/ (what the figures are of), "+changes" if the tree
    has uncommitted ones there: a change to the bench alone keeps one results file valid."""
    done = subprocess.run(["git", "log", "-1", "--format=%H", "--", "builder"], cwd=REPO, capture_output=True,
                          text=True, check=False)
    dirty = subprocess.run(["git", "status", "--porcelain", "builder"], cwd=REPO, capture_output=True, text=True,
                           check=False).stdout.strip()
    return done.stdout.strip() + ("+changes" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="two repetitions, debian12 only (a few minutes instead of ~25)")
    parser.add_argument("--reps", type=int, help="repetitions of each measure (default 5 for a, 3 for b-e and d)")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "latest.json",
                        help="where to write the figures (default: bench/results/latest.json)")
    parser.add_argument("--table", type=Path, metavar="JSON", help="print the table of a results file; run nothing")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project folders")
    parser.add_argument("--only", choices=("a", "bce", "d"), action="append", help="run only these parts")
    parser.add_argument("--baseline", type=Path, metavar="CHECKOUT",
                        help="part a: also time this other checkout of builder (e.g. `git worktree add` of an older "
                        "commit), interleaved with the two sides: before and after a change, under the same load")
    parser.add_argument("--cells", metavar="PLATFORM/PACKAGE,…", help="part a: only these of its cells")
    parser.add_argument("--large", action="store_true",
                        help="only the large matrix (bench/large.yaml): cold and warm -j2, beside a cold -j2 of the "
                        "shipped matrix's cells on the same platforms (about 15 minutes on 2 cores)")
    parser.add_argument("--add", action="store_true",
                        help="add the parts run to the results file --json names (run long parts apart, one file)")
    args = parser.parse_args(argv)
    if args.table:
        say(table(json.loads(args.table.read_text())))
        return 0
    if args.large and (args.only or args.quick or args.cells or args.baseline):
        parser.error("--large runs alone: not with --only, --quick, --cells or --baseline")
    parts = {"large"} if args.large else set(args.only or ("a", "bce", "d"))
    data = load_shipped()
    root = Path(tempfile.mkdtemp(prefix="builder-bench-"))
    reps_a = args.reps or (2 if args.quick else 5)
    reps_b = args.reps or (2 if args.quick else 3)
    results: dict[str, Any] = json.loads(args.json.read_text()) if args.add and args.json.is_file() else {}
    if results and results.get("commit") != git_commit():
        raise SystemExit(f"{args.json} holds figures of commit {results.get('commit')}, not of {git_commit()}")
    run_of = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "quick": args.quick,
              "parts": sorted(parts), "load_before": os.getloadavg()}
    results.update({"commit": git_commit(), "cores": os.cpu_count()})
    results.setdefault("runs", []).append(run_of)
    try:
        say("preparing (not timed): sources, images, and each platform's prepared test environment")
        # All three are made once per machine and set of inputs, and reused by every later run:
        # "cold" below means they exist and nothing is published.
        prepare = project(root, "prepare", data)
        on_large = ["--platform", ",".join(LARGE_PLATFORMS)] if "large" in parts else []
        must(builder(prepare, "images", *on_large), "builder images")
        if "large" in parts:
            # The same for the large matrix, whose system packages make its own images; and the
            # shipped matrix's prepared environments on the two platforms it is compared on.
            large = project(root, "prepare-large", load_shipped(LARGE))
            must(builder(large, "images"), "builder images (large)")
            must(builder(large, "all", "--package", "six"), "builder all --package six (large, warm-up)")
            must(builder(prepare, "all", "--package", "six", *on_large), "builder all --package six (warm-up)")
            say(f"large. {LARGE.relative_to(REPO)}: cold and warm all -j2; the shipped matrix's cells cold beside it")
            results["large"] = part_large(root, args.reps or 1)
        if "bce" in parts:  # parts a and d warm up their own cells
            must(builder(prepare, "all", "--package", "six"), "builder all --package six (warm-up)")
        if "a" in parts:
            say("a. builder all --cell C --force -j1 vs the same compile by hand, whole commands, interleaved")
            cells = [c for c in BY_HAND_CELLS if not args.quick or c[1] == "debian12"]
            if args.cells:  # in the order given
                known = {f"{platform}/{canonical(package)}": (package, platform) for package, platform in BY_HAND_CELLS}
                cells = [known[c] for c in args.cells.split(",") if c in known]
            results["by_hand"] = part_a(root, data, reps_a, cells, args.baseline.resolve() if args.baseline else None)
        if "bce" in parts:
            say("b, c, e. the shipped matrix: cold -j1, cold -j2, warm, interleaved")
            results["shipped"] = part_bce(root, data, ["--platform", "debian12"] if args.quick else [], reps_b)
        if "d" in parts:
            say("d. builder wheels -j1, -j2 vs cibuildwheel (debian12), interleaved")
            results["cibuildwheel"] = part_d(root, data, WHEEL_PACKAGES[:2] if args.quick else WHEEL_PACKAGES, reps_b)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    run_of["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    run_of["load_after"] = os.getloadavg()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    say("")
    say(table(results))
    say(f"\n(load average before/after: {run_of['load_before'][0]:.1f}/{run_of['load_after'][0]:.1f}; "
        f"figures in {args.json})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

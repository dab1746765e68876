"""What the interpreter package costs: paid once per change of its inputs, then taken from a cache.

    python bench/interpreter_bench.py [--platform debian12-py27] [--reps N] [--cold] [--json out.json]

Three figures, for a platform with `interpreter:` in the shipped matrix:

  1. the build itself, as builder recorded it when it built the package (`build_seconds` and
     `test_seconds` of the cache's interpreter.json: the OpenSSL and Python compiles in the
     build guest, then the install and test in the bare base), with the key it was built for;
     with `--cold`, the package is built afresh first (a copy of the matrix whose `release:` is
     bumped, so the key is new; 15 minutes or more on 2 cores) and that build is the one recorded;
  2. a warm `python -m builder images --platform P` (package and images present), whole command;
  3. the same on a checkout with an empty cache (CI's clean clone): the package unpacked from the
     image the engine keeps, whole command.

Each warm figure is the median of --reps runs with min and max; the load average is recorded.
Writes JSON (default bench/results/interpreter.json) and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".builder" / "cache"


def project(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").symlink_to(REPO / "images", target_is_directory=True)
    (folder / "matrix.yaml").write_text(text)
    return folder / "matrix.yaml"


def builder(matrix: Path, cache: Path, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    env = {**os.environ, "BUILDER_CACHE": str(cache), "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "builder", *args, "--matrix", str(matrix)], cwd=matrix.parent,
                          env=env, capture_output=True, text=True, check=False, timeout=7200)
    took = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"`builder {' '.join(args)}` failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return took, done


def recorded(cache: Path, output: str) -> dict[str, Any]:
    """The interpreter.json of the package the run's output says it used or built."""
    folders = sorted((cache / "interpreter").glob("*/interpreter.json"), key=lambda p: p.stat().st_mtime)
    for path in reversed(folders):
        about = json.loads(path.read_text())
        if all(name in output for name in about.get("files", [])[:1]):
            return {k: about[k] for k in ("key", "build_seconds", "test_seconds", "files", "sources", "configure")
                    if k in about}
    raise SystemExit(f"no interpreter.json under {cache / 'interpreter'} names the package the run used")


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2), "max": round(max(values), 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platform", default="debian12-py27")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="build the package afresh first (a bumped release)")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "interpreter.json")
    args = parser.parse_args()
    text = (REPO / "matrix.yaml").read_text()
    results: dict[str, Any] = {"platform": args.platform, "cores": os.cpu_count(),
                               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    with tempfile.TemporaryDirectory(prefix="interpreter-bench-") as tmp:
        scratch = Path(tmp)
        if args.cold:
            bumped = text.replace('      release: "1"\n', f'      release: "1.bench{int(time.time())}"\n', 1)
            if bumped == text:
                raise SystemExit('the shipped matrix has no `release: "1"` under interpreter: to bump')
            cold_matrix = project(scratch / "cold", bumped)
            took, done = builder(cold_matrix, CACHE, "images", "--platform", args.platform)
            results["cold_images_wall_s"] = round(took, 1)
            results["build"] = recorded(CACHE, done.stdout)
        warm_matrix = project(scratch / "warm", text)
        took, done = builder(warm_matrix, CACHE, "images", "--platform", args.platform)  # makes sure all is present
        if not args.cold:
            results["build"] = recorded(CACHE, done.stdout)
        results["build"]["measured"] = "by builder, when it built the package (cold); see key"
        warm, clean = [], []
        for rep in range(args.reps):
            load = os.getloadavg()[0]
            took, done = builder(warm_matrix, CACHE, "images", "--platform", args.platform)
            assert "interpreter packages up to date" in done.stdout, done.stdout
            warm.append(took)
            empty = scratch / f"empty-{rep}"
            shutil.copytree(CACHE / "sources", empty / "sources")
            took, done = builder(project(scratch / f"clean-{rep}", text), empty, "images", "--platform", args.platform)
            assert "interpreter packages up to date" in done.stdout and "building the interpreter" not in done.stdout
            clean.append(took)
            results.setdefault("load_average", []).append(round(load, 2))
        results["warm_images_wall_s"] = {**spread(warm), "runs": [round(v, 2) for v in warm]}
        results["clean_checkout_images_wall_s"] = {**spread(clean), "runs": [round(v, 2) for v in clean]}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    build = results["build"]
    print(f"{args.platform}: interpreter package built in {build['build_seconds']} s, tested in {build.get('test_seconds')} s "
          f"(key {build['key'][:16]})")
    print(f"warm `images`: {results['warm_images_wall_s']['median']} s; with an empty cache (from the engine): "
          f"{results['clean_checkout_images_wall_s']['median']} s  -> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

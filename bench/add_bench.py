"""How long `add` takes per platform, against the by-hand figure of about 2 minutes per package per platform.

    python bench/add_bench.py [--package psycopg2 --package python-ldap] [--json out.json]

Two packages by default: psycopg2 (one OS library, the same run-time package on both Debian
releases) and python-ldap (two OS libraries found in two probe rounds, a run-time package that
differs per release, and two pure run-time dependencies, pyasn1 and pyasn1_modules, derived,
built and tested with it). For each package and each platform (debian11-py27, debian12) alone,
in a fresh project folder (the shipped matrix without the package, the shipped images/, a fresh
output and work folder; sources cached, the platform's images and look-up image present from
earlier runs): `python -m builder add PACKAGE --platform P`, from nothing to published, timed
on the wall clock, with the phases `add` itself reports (resolve, each probe build, the cell's
build and test, publish) and the entries it wrote.
Writes the figures as JSON (default bench/results/add.json) and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLATFORMS = ("debian11-py27", "debian12")


def without(name: str) -> str:
    text = (REPO / "matrix.yaml").read_text()
    at = text.find(f"  - name: {name}\n")
    return text if at < 0 else text[:at].rstrip("\n") + "\n"


def one(package: str, platform: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="add-bench-") as tmp:
        folder = Path(tmp)
        (folder / "images").symlink_to(REPO / "images", target_is_directory=True)
        (folder / "Vagrantfile").symlink_to(REPO / "Vagrantfile")
        (folder / "matrix.yaml").write_text(without(package))
        env = {**os.environ, "BUILDER_CACHE": str(REPO / ".builder" / "cache"), "PYTHONPATH": str(REPO)}
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "builder", "add", package, "--platform", platform],
                              cwd=folder, env=env, capture_output=True, text=True, check=False)
        wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"add {package} on {platform} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    phases = {}
    line = next((x for x in done.stdout.splitlines() if x.startswith("time: ")), "")
    for name, seconds in re.findall(r"([a-z]+(?: \d)?) ([0-9.]+) s", line):
        phases[name] = float(seconds)
    written = re.findall(r"^\+  - name: (\S+)$", done.stdout, flags=re.MULTILINE)
    # Images made during the run (a round's new list) and the time spent making them ready: a run
    # that finds every image from an earlier run is a warm figure, one that makes them a cold one.
    made = re.findall(r"^building image (\S+)$", done.stdout, flags=re.MULTILINE)
    ready = sum(float(x) for x in re.findall(r"^\[[^]]+\] images ready \(([0-9.]+) s\)$", done.stdout, flags=re.MULTILINE))
    return {"package": package, "platform": platform, "wall": round(wall, 1), "phases": phases, "entries": written,
            "images_built": len(made), "images_ready_s": round(ready, 1), "cores": os.cpu_count()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", action="append", help="repeatable; default: psycopg2 and python-ldap")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "add.json")
    args = parser.parse_args()
    packages = args.package or ["psycopg2", "python-ldap"]
    load = os.getloadavg()[0]
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results = [one(package, platform) for package in packages for platform in PLATFORMS]
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"commit": commit, "started": started, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                     "load_before": load, "load_after": os.getloadavg()[0], "runs": results}, indent=2) + "\n")
    print(f"{'package':<12} {'platform':<16} {'wall':>8}  phases (add's own)")
    for r in results:
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in r["phases"].items())  # type: ignore[union-attr]
        print(f"{r['package']:<12} {r['platform']:<16} {r['wall']:>6.1f} s  {phases}; "
              f"{r['images_built']} images built, {r['images_ready_s']:.1f} s making images ready")
    print(f"by hand: about 120 s per package per platform; load average {load:.1f} before")
    return 0


if __name__ == "__main__":
    sys.exit(main())

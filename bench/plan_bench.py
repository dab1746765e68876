"""Memory and planning, with no Docker: builder on synthetic matrices of many cells.

    python bench/plan_bench.py [--json out.json]

1. Resident memory on a 500-cell matrix: load, plan (select, dependency order, input keys) and
   the parts of a run that need no engine: recording every stage of every cell (the state files),
   publishing each platform's artifacts (index pages and manifest), the reports (results.json,
   junit.xml, report.html) and the summary table. Target: under 150 MB peak.
2. Loading + planning a 5,000-cell matrix (load, select, dependency order, input keys). Target:
   under 1 s.

Each measure runs in a fresh interpreter, so its peak resident size is its own.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FAKE_SHA = "0" * 64


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def synthetic_matrix(platforms: int, packages: int) -> str:
    """A matrix in the shipped one's shape: platforms of two families, packages with build tools,
    system lists, overrides, skip lists and run-time dependencies on earlier packages."""
    lines = ["settings:", "  output: eggs", "platforms:"]
    for p in range(platforms):
        family = "debian" if p % 2 == 0 else "redhat"
        lines += [
            f"  - name: plat{p:02d}",
            f"    family: {family}",
            f"    base: {{image: 'base{p}:latest'}}",
            "    image: images/any",
            "    python: /usr/bin/python3",
            "    tools:",
            f"      - {{name: pip, version: '24.2', sha256: {sha('pip')}}}",
        ]
    lines.append("packages:")
    for n in range(packages):
        lines += [
            f"  - name: package-{n:04d}",
            f"    version: 1.{n}.0",
            f"    sha256: {sha(f'source {n}')}",
            "    build_requires:",
            f"      - {{name: Cython, version: 0.29.37, sha256: {sha('cython')}}}",
            "    env: {FORCE_SPEEDUPS: '1'}",
            f"    extensions: [package_{n:04d}._speedups]",
            f"    skip_imports: [package_{n:04d}.win32]",
            "    system:",
            f"      debian: {{build: [lib{n % 40}-dev], runtime: [lib{n % 40}]}}",
            f"      redhat: {{build: [lib{n % 40}-devel], runtime: [lib{n % 40}]}}",
        ]
        if n % 5 == 4:
            lines.append(f"    depends: [package-{n - 1:04d}]")
        if n % 10 == 0 and platforms > 1:
            lines += ["    overrides:", "      plat01:", f"        version: 1.{n}.1",
                      f"        sha256: {sha(f'source {n} old')}"]
    return "\n".join(lines) + "\n"


def write_project(root: Path, platforms: int, packages: int) -> Path:
    (root / "images" / "any").mkdir(parents=True)
    (root / "images" / "any" / "Dockerfile").write_text("FROM ${BASE} AS runtime\nFROM runtime AS build\n")
    path = root / "matrix.yaml"
    path.write_text(synthetic_matrix(platforms, packages))
    return path


def plan_only(matrix_path: Path) -> dict[str, Any]:
    """Load + plan, timed, in this interpreter."""
    from builder.cells import pipeline
    from builder.machines.base import Images
    from builder.matrix import load as config
    from builder.matrix import plan

    started = time.perf_counter()
    matrix = config.load(matrix_path)
    loaded = time.perf_counter()
    cells = plan.select(matrix)
    # The keys as a run computes them (each cell's own, chained with its dependencies'), with
    # made-up image ids where a run would have the engine's.
    run = pipeline.Run(matrix, cells, echo=lambda line: None)
    for platform in matrix.platforms:
        run.images[platform.name] = Images(build=sha("b" + platform.name), runtime=sha("r" + platform.name))
    pipeline._compute_keys(run)
    keys = run.keys
    done = time.perf_counter()
    return {"cells": len(cells), "keys": len(keys), "load_s": round(loaded - started, 3),
            "plan_s": round(done - loaded, 3), "load_and_plan_s": round(done - started, 3)}


def engine_free_run(matrix_path: Path) -> dict[str, Any]:
    """Everything a 500-cell `all` does that needs no engine, with made-up stage results."""
    import resource

    from rich.console import Console

    from builder.cells import pipeline
    from builder.cells.state import StageResult
    from builder.matrix import load as config
    from builder.matrix import plan
    from builder.output import publish
    from builder.report import files as reports
    from builder.report import terminal as report

    started = time.perf_counter()
    matrix = config.load(matrix_path)
    cells = plan.select(matrix)
    run = pipeline.Run(matrix, cells, jobs=2, echo=lambda line: None)
    for cell in plan.dependency_order(cells):
        run.keys[cell.id] = plan.input_key(cell, build_image=sha("b"), runtime_image=sha("r"),
                                           guest_digest=FAKE_SHA, builder_version="bench")
    artifacts_dir = matrix.settings.work / "artifacts"
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    records: dict[str, list[publish.PublishRecord]] = {}
    for cell in cells:
        name = cell.package.name.replace("-", "_")
        version = cell.spec.source.version
        files = []
        for filename in (f"{name}-{version}-py3.11-linux-x86_64.egg", f"{name}-{version}-cp311-cp311-linux_x86_64.whl"):
            path = artifacts_dir / cell.platform.name / filename
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(filename.encode() * 64)
            files.append(path)
        key = run.keys[cell.id]
        for stage in ("fetch", "images", "build", "test"):
            run.record(cell, StageResult(cell.id, stage, "passed", artifacts=[str(f) for f in files], input_key=key,
                                         duration=1.0, images={"build": "b", "runtime": "r"}))
        records.setdefault(cell.platform.name, []).append(publish.PublishRecord(
            cell_id=cell.id, package=cell.package.name, version=version, platform=cell.platform.name,
            artifacts=tuple(files), source_sha256=cell.spec.source.sha256, input_key=key, build_image="b",
            runtime_image="r", builder_version="bench", finished_at="2026-01-01T00:00:00Z"))
    output = matrix.settings.output
    output.mkdir(parents=True, exist_ok=True)
    by_id = {c.id: c for c in cells}
    for platform, batch in records.items():
        published = publish.publish(output, platform, batch)
        for record in batch:
            cell = by_id[record.cell_id]
            run.record(cell, StageResult(cell.id, "publish", "passed", input_key=record.input_key,
                                         artifacts=[str(p) for p in published if p.name in {a.name for a in record.artifacts}]))
    reports.write_reports(matrix.settings.work / "report", "builder all", reports.from_run(run))
    report.summary(run, Console(file=io.StringIO(), width=200), "publish")
    elapsed = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    return {"cells": len(cells), "seconds": round(elapsed, 2), "peak_rss_mb": round(peak_kb / 1024, 1),
            "published": sum(len(b) for b in records.values())}


def child(kind: str, platforms: int, packages: int) -> dict[str, Any]:
    """Run one measure in a fresh interpreter (its own peak RSS) and return its figures."""
    code = (f"import json, sys; sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'bench')!r}]\n"
            "from pathlib import Path\nimport plan_bench\n"
            f"print(json.dumps(plan_bench.{kind}(Path(sys.argv[1]))))")
    with tempfile.TemporaryDirectory(prefix="builder-plan-bench-") as tmp:
        matrix = write_project(Path(tmp), platforms, packages)
        done = subprocess.run([sys.executable, "-c", code, str(matrix)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="builder's memory and planning benchmark (no Docker)")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "plan.json")
    args = parser.parse_args(argv)
    memory = child("engine_free_run", 5, 100)
    planning = min((child("plan_only", 10, 500) for _ in range(3)), key=lambda r: r["load_and_plan_s"])
    results = {"memory_500": memory, "plan_5000": planning,
               "targets": {"peak_rss_mb": 150, "load_and_plan_s": 1.0}}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{memory['cells']} cells, load + plan + engine-free run (state, publish, reports, summary): "
          f"peak RSS {memory['peak_rss_mb']} MB (target < 150) in {memory['seconds']} s")
    print(f"{planning['cells']} cells, load + plan: {planning['load_and_plan_s']} s "
          f"(load {planning['load_s']} s, plan {planning['plan_s']} s; target < 1 s; best of 3)")
    ok = memory["peak_rss_mb"] < 150 and planning["load_and_plan_s"] < 1.0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

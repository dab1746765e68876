"""A published cell's provenance statement (output/provenance.py renders it): its pinned inputs,
its images, the commands its guests ran, and what the test found in the runtime image."""
from __future__ import annotations

from typing import Any

from .. import __version__
from ..fetch import Fetcher
from ..machines.base import GUEST_ROOT
from ..matrix.model import Matrix, Pin
from ..matrix.plan import Cell
from ..output import provenance
from .state import StageResult


def provenance_of(matrix: Matrix, cell: Cell, tested: StageResult, built: StageResult) -> dict[str, Any]:
    """The cell's provenance statement (output/provenance.py): its pinned inputs, images, the
    commands its guests ran, and what the test found in the runtime image."""
    fetcher = Fetcher(matrix.settings.cache, matrix.settings.index_url)
    spec = cell.spec

    def pin(p: Pin) -> dict[str, Any]:
        return {"name": p.name, "version": p.version, "sha256": p.sha256, "url": fetcher.origin(p)}

    checks = tested.details.get("checks") or {}
    results = {
        "status": tested.status,
        "formats": {fmt: {"modules": len(report.get("modules") or []), "extensions": report.get("extensions") or {},
                          "test": (report.get("test") or {}).get("returncode")}
                    for fmt, report in sorted(checks.items()) if isinstance(report, dict)},
    }
    return provenance.statement(
        cell=cell.id, platform=cell.platform.name, family=cell.platform.family, package=cell.package.name,
        version=spec.source.version, source=pin(spec.source), build_requires=[pin(p) for p in spec.build_requires],
        tools=[pin(p) for p in cell.platform.tools],
        parameters={"formats": list(cell.package.formats), "setup_args": list(spec.setup_args),
                    "config_settings": [list(kv) for kv in spec.config_settings], "env": dict(spec.env),
                    "extensions": None if spec.extensions is None else list(spec.extensions),
                    "skip_imports": list(spec.skip_imports), "test": spec.test,
                    "system": {"build": list(cell.system.build), "runtime": list(cell.system.runtime)}},
        input_key=tested.input_key, build_image=tested.images.get("build", ""),
        runtime_image=tested.images.get("runtime", ""), builder_version=__version__, finished_at=tested.finished_at,
        build_commands=built.details.get("commands") or {},
        test_command=f"{cell.platform.python} {GUEST_ROOT}/guest/check.py {GUEST_ROOT}/spec.json",
        os_packages=provenance.os_packages_from_checks(checks), results=results,
    )

"""The selected cells as a CI matrix, so that each cell builds in its own CI job.

Three formats, all from the same cells in the same order:

json
    ``{"cells": [{"id", "platform", "package", "version", "backend", "enabled"}, ...]}``, for
    scripts.
github
    One line of JSON for ``strategy.matrix``: ``{"include": [{"cell", "platform", "package"}]}``.
    ``examples/ci/github-build-matrix.yml`` writes it to ``$GITHUB_OUTPUT`` in a ``plan`` job
    and expands it with ``fromJSON(needs.plan.outputs.matrix)``; each job runs
    ``python -m builder all --cell ${{ matrix.cell }}`` and a last job runs
    ``python -m builder merge``.
gitlab
    YAML: ``build: {parallel: {matrix: [{CELL: id}, ...]}}``, one entry (one job) per cell.
    ``examples/ci/gitlab-ci.yml`` writes it as an artifact in a ``plan`` job, then a trigger job
    starts a child pipeline from two includes: the example file itself, whose ``build`` job
    (``python -m builder all --cell "$CELL"``) and ``merge`` job run only in child pipelines,
    and the artifact (``trigger:include:artifact``). GitLab deep-merges included files in order,
    so the artifact's ``build.parallel`` lands on that ``build`` job.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

import yaml

from ..errors import SelectionError
from .plan import Cell

Format = Literal["github", "gitlab", "json"]
FORMATS: tuple[Format, ...] = ("github", "gitlab", "json")

# Jobs one matrix may expand to: past these the CI service rejects the whole pipeline with a
# message that does not say which cells; saying it here lets the user narrow the selection.
MAX_JOBS: dict[Format, int] = {"github": 256, "gitlab": 200}


def matrix_document(cells: Sequence[Cell], fmt: Format) -> str:
    """The cells as a CI matrix in `fmt`, in the order given; one job per cell."""
    ids = [c.id for c in cells]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise SelectionError(f"cells given twice: {', '.join(duplicates)}")
    limit = MAX_JOBS.get(fmt)
    if limit is not None and len(cells) > limit:
        raise SelectionError(
            f"{len(cells)} cells, but a {fmt} matrix holds at most {limit} jobs",
            hint="split the matrix with --platform or --package, one CI matrix per part",
        )
    if fmt == "json":
        return json.dumps({"cells": [_json_entry(c) for c in cells]}, indent=2) + "\n"
    if fmt == "github":
        include = [{"cell": c.id, "platform": c.platform.name, "package": c.package.name} for c in cells]
        return json.dumps({"include": include}, separators=(",", ":"))
    if fmt == "gitlab":
        document = {"build": {"parallel": {"matrix": [{"CELL": c.id} for c in cells]}}}
        return yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
    raise ValueError(f"unknown matrix format {fmt!r}; one of {', '.join(FORMATS)}")


def _json_entry(cell: Cell) -> dict[str, Any]:
    return {
        "id": cell.id,
        "platform": cell.platform.name,
        "package": cell.package.name,
        "version": cell.spec.source.version,
        "backend": cell.platform.backend,
        "enabled": cell.platform.enabled,
    }

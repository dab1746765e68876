"""What the host hands each guest script (its spec.json) and what it reads back (its result).

The guest scripts (builder/guest/) run on Python 2.6+ and take plain JSON; this module is the one
place the host side declares those shapes and serialises them. Each spec is built in one place
(cells.cell for build.py, check.py and their prepare step; imports.check for appenv.py).
Paths are guest paths (under GUEST_ROOT / GUEST_WORK).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict


class Prepared(TypedDict, total=False):
    """What a guest starts from when its platform's environment was prepared once (see
    cells.cell.prepared_env): the tar, how it was made, and the keys the preparing guest reported
    (e.g. pip_dir)."""

    prepared_tar: str
    prepared_env: str
    pip_dir: str


class PrepareSpec(TypedDict):
    """build.py or check.py with `prepare`: make the role's fresh environment as a tar."""

    prepare: bool
    work: str
    out: str
    virtualenv: str | None
    pip: str | None


class BuildSpec(Prepared):
    """build.py: one sdist into the requested formats. Writes OUT/build-result.json."""

    sdist: str
    name: str
    version: str
    formats: list[str]
    build_requires: list[str]
    virtualenv: str | None
    setup_args: list[str]
    config_settings: list[list[str]]  # [KEY, VALUE] pairs, in order
    env: dict[str, str]
    work: str
    out: str


class CheckItem(TypedDict):
    """One artifact to check, with the artifacts it needs installed first; its result goes to
    OUT/<format>/check-result.json."""

    artifact: str
    format: str
    deps: list[str]
    out: str


class CheckSpec(Prepared):
    """check.py: every item in its own fresh environment, one guest for them all."""

    items: list[CheckItem]
    virtualenv: str | None
    pip: str | None
    extensions: list[str] | None
    skip_imports: list[str]
    test: str | None
    work: str
    out: str
    # What "toolless" means depends on the family (FreeBSD's base system has cc): the check
    # also proves the package's build-only OS packages are not in the runtime guest.
    family: str
    build_only: list[str]
    runtime_packages: list[str]  # the package's run-time OS packages: check.py records their versions


# appenv.py: the published artifacts installed offline, then imports.py `try` of each of `try`
# (a Python keyword, hence the functional form).
AppEnvSpec = TypedDict(
    "AppEnvSpec",
    {"format": str, "artifacts": list[str], "virtualenv": str | None, "pip": str | None, "work": str, "out": str,
     "try": list[str]},
)


# Results are read as plain JSON objects: a guest that crashed half-way writes nothing or a
# partial file, and every reader treats a missing key as "not done". These name the files.
BUILD_RESULT = "build-result.json"
CHECK_RESULT = "check-result.json"
PREPARE_RESULT = "prepare-result.json"


def spec_text(spec: Mapping[str, Any]) -> str:
    """A spec as the guest reads it: sorted, indented JSON."""
    return json.dumps(spec, indent=2, sort_keys=True)


def read_result(path: Path) -> dict[str, Any]:
    """A guest's result, or {} when it left none (or one that is not a JSON object)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}

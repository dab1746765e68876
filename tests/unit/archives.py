"""Artifacts made on the spot for the unit tests: eggs and wheels are zip files."""
from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path


def make_zip(path: Path, members: Mapping[str, str | bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path

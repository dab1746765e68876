"""The compiled modules of an egg or wheel and the sonames each needs (DT_NEEDED), read with
pyelftools: reading an ELF file runs nothing of the package."""
from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile


def so_members(artifact: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(artifact) as archive:
        return {n: archive.read(n) for n in archive.namelist()
                if re.search(r"\.so(\.\d+)*$", n) and not n.startswith(("EGG-INFO/", "__pycache__/")) and ".data/" not in n}


def module_of(member: str) -> str:
    stem = member.split("/")
    stem[-1] = re.sub(r"(\.cpython-[^.]+|\.abi3|\.cp\d+-[^.]+)?\.so(\.\d+)*$", "", stem[-1])
    return ".".join(stem)


def needed(data: bytes) -> list[str]:
    """The DT_NEEDED sonames of an ELF file."""
    try:
        elf = ELFFile(io.BytesIO(data))
    except ELFError:
        return []
    found: list[str] = []
    for section in elf.iter_sections():
        if isinstance(section, DynamicSection):
            found += [str(getattr(tag, "needed")) for tag in section.iter_tags() if tag.entry.d_tag == "DT_NEEDED"]  # noqa: B009
    return found

"""Which OS package provides a file, asked of the platform's own package index.

Debian platforms only (a debootstrap base): a helper image of the platform's suite holds
`apt-file` and the archive's Contents index, made once per base image (the one step that
reaches the distribution's mirror, like any image build). A look-up runs in a fresh container
of that image with no network; it never sees a package's code, only the file names asked for.
Which installed package owns a library (`dpkg -S`) is asked of the build image itself.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..errors import ImageError
from ..matrix.model import Engine, Platform
from . import engine
from .images import base_tag

LOOKUP_REPOSITORY = "builder/lookup"
LOOKUP_DOCKERFILE = """\
ARG BASE
FROM ${BASE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends apt-file && apt-file update \\
 && chmod -R a+rX /var/cache/apt /var/lib/apt
"""


@dataclass(frozen=True)
class Found:
    """One answer of the index: package `package` ships `path`."""

    package: str
    path: str


def supported(platform: Platform) -> bool:
    return platform.family == "debian" and platform.base is not None and platform.base.kind == "debootstrap"


def lookup_image(platform: Platform, log: Callable[[str], None] = lambda line: None) -> str:
    """The id of the platform's look-up image (apt-file with the suite's Contents index)."""
    if not supported(platform):
        raise ImageError(f"{platform.name}: looking up which package provides a file is done for Debian platforms "
                         "made with debootstrap only")
    assert platform.base is not None
    client = engine.client(platform.engine)
    base = base_tag(platform.base.value)
    base_id = engine.image_id(client, base)
    if base_id is None:
        raise ImageError(f"{platform.name}: no base image {base} yet", hint="make the platform's images first: "
                         f"python -m builder images --platform {platform.name}")
    digest = hashlib.sha256((LOOKUP_DOCKERFILE + base_id).encode()).hexdigest()[:12]
    tag = f"{LOOKUP_REPOSITORY}:{platform.base.value}-{digest}"
    if engine.image_id(client, tag) is None:
        log(f"making the package look-up image {tag} (apt-file and the {platform.base.value} Contents index, once)")
    return engine.image_from_text(client, LOOKUP_DOCKERFILE, tag, {"BASE": base}, "package look-up")


def search(platform: Platform, patterns: Mapping[str, str], log: Callable[[str], None] = lambda line: None
           ) -> dict[str, list[Found]]:
    """For each key, the packages whose files match its regular expression (against the full
    path, e.g. `/libpq-fe\\.h$`), from one `apt-file search` in the look-up image."""
    if not patterns:
        return {}
    image = lookup_image(platform, log)
    # apt-file takes a POSIX ERE (no (?:...)) and reads a `$` only at the very end of it.
    ends = all(p.endswith("$") for p in patterns.values())
    joined = "(" + "|".join(p.removesuffix("$") if ends else p for p in patterns.values()) + (")$" if ends else ")")
    code, output = engine.run_once(engine.client(platform.engine), image, ["apt-file", "search", "--regexp", joined])
    if code not in (0, 1):  # 1: nothing matched
        raise ImageError(f"{platform.name}: apt-file search failed (exit {code}): {output.strip()[-300:]}")
    found: dict[str, list[Found]] = {key: [] for key in patterns}
    compiled = {key: re.compile(p) for key, p in patterns.items()}
    for line in output.splitlines():
        package, sep, path = line.partition(": ")
        if not sep:
            continue
        for key, pattern in compiled.items():
            if pattern.search(path.strip()):
                found[key].append(Found(package.strip(), path.strip()))
    return found


def best(found: Sequence[Found], prefer_dev: bool) -> str | None:
    """The one package to name: a -dev package for build-time files (headers, config tools,
    .so links, .pc files), never a debug or cross one; then the shortest name."""
    names = [f.package for f in found if not re.search(r"-dbg$|-dbgsym$|-cross$|^lib32|^libx32|^lib64|-i386-", f.package)]
    if not names:
        return None
    if prefer_dev:
        dev = [n for n in names if n.endswith("-dev")]
        names = dev or names
    return sorted(set(names), key=lambda n: (len(n), n))[0]


_OWNERS = r"""
for s in "$@"; do
  p=$(ldconfig -p | awk -v s="$s" '$1 == s { print $NF; exit }')
  if [ -z "$p" ]; then echo "missing $s"; continue; fi
  r=$(readlink -f "$p")
  o=$(dpkg -S "$p" 2>/dev/null || dpkg -S "$r" 2>/dev/null || dpkg -S "*/$s" 2>/dev/null | head -n 1)
  echo "found $s $p ${o%%:*}"
done
"""


def owners(image: str, sonames: Iterable[str], where: Engine = engine.DEFAULT) -> dict[str, tuple[str, str | None]]:
    """soname -> (its path in `image`, the installed package that owns it, or None)."""
    names = sorted(set(sonames))
    if not names:
        return {}
    code, output = engine.run_once(engine.client(where), image, ["sh", "-c", _OWNERS, "sh", *names])
    if code != 0:
        raise ImageError(f"asking dpkg which packages own {', '.join(names)} failed (exit {code}): {output[-300:]}")
    result: dict[str, tuple[str, str | None]] = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "found":
            result[parts[1]] = (parts[2], parts[3] if len(parts) > 3 and parts[3] else None)
        elif len(parts) == 2 and parts[0] == "missing":
            result[parts[1]] = ("", None)
    return result


def installed(image: str, where: Engine = engine.DEFAULT) -> set[str]:
    """The names of the packages installed in `image`."""
    code, output = engine.run_once(engine.client(where), image, ["dpkg-query", "-W", "-f", "${Package}\\n"])
    if code != 0:
        raise ImageError(f"dpkg-query in {image[:19]} failed (exit {code}): {output[-300:]}")
    return {line.strip() for line in output.splitlines() if line.strip()}


def soname_packages(platform: Platform, sonames: Iterable[str],
                    log: Callable[[str], None] = lambda line: None) -> dict[str, str]:
    """soname -> the platform's package that ships it (for naming what a runtime image lacks)."""
    names = sorted(set(sonames))
    if not names or not supported(platform):
        return {}
    patterns = {s: "/" + re.escape(s) + "$" for s in names}
    found = search(platform, patterns, log)
    answer = {}
    for soname, hits in found.items():
        libs = [h for h in hits if re.search(r"^/(usr/)?lib/", h.path)]
        name = best(libs or hits, prefer_dev=False)
        if name:
            answer[soname] = name
    return answer


def python_version(image: str, python: str, where: Engine = engine.DEFAULT) -> str:
    """The full version (2.7.18) of the interpreter `python` in `image`."""
    code, output = engine.run_once(engine.client(where), image, [python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"])
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if code != 0 or not lines or not re.fullmatch(r"\d+\.\d+\.\d+", lines[-1]):
        raise ImageError(f"{python} --version in {image[:19]} failed (exit {code}): {output.strip()[-300:]}")
    return lines[-1]


def setuptools_version(image: str, python: str, where: Engine = engine.DEFAULT) -> str | None:
    """The version of the setuptools `python` imports in `image`, or None when it has none."""
    snippet = "import setuptools; print(setuptools.__version__)"
    code, output = engine.run_once(engine.client(where), image, [python, "-c", snippet])
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if code == 0 and lines else None

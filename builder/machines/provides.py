"""Which OS package provides a file, asked of the platform's own package index.

Debian platforms (a debootstrap base): a helper image of the platform's suite holds `apt-file`
and the archive's Contents index. Red Hat platforms (a registry base such as centos:6): a helper
image holds yum's metadata with its file lists (`yum -y makecache`, made on the platform's own
`os` stage when its Dockerfile has one, so the look-up asks the repositories the build installs
from). Either is made once per base image (the one step that reaches the distribution's mirror,
like any image build). A look-up runs in a fresh container of that image with no network; it
never sees a package's code, only the file names asked for. Which installed package owns a
library (`dpkg -S`, `rpm -qf`) is asked of the build image itself.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..errors import ImageError
from ..matrix.model import Engine, Platform
from . import engine
from .images import base_tag, dockerfile

LOOKUP_REPOSITORY = "builder/lookup"
LOOKUP_DOCKERFILE = """\
ARG BASE
FROM ${BASE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends apt-file && apt-file update \\
 && chmod -R a+rX /var/cache/apt /var/lib/apt
"""
# yum 3.2 (CentOS 5 and 6) fetches every repository's file lists with makecache; a look-up then
# reads them with -C (the cache only) as nobody, which uses the system's cache without a lock.
RPM_LOOKUP_DOCKERFILE = """\
ARG BASE
FROM ${BASE}
RUN yum -y makecache && chmod -R a+rX /var/cache/yum
"""
# The packages that give a compiler the build log says is missing, per family.
COMPILERS = {"debian": {"g++": "g++"}, "redhat": {"g++": "gcc-c++"}}
ARCH = "x86_64"  # the engines' machines: a 64-bit look-up prefers x86_64 (and noarch) packages


@dataclass(frozen=True)
class Found:
    """One answer of the index: package `package` ships `path` (`arch`: Red Hat's, e.g. i686)."""

    package: str
    path: str
    arch: str = ""


@dataclass(frozen=True)
class Query:
    """What to look up: `regex`, a POSIX ERE on the full path (what apt-file takes, and what
    every answer is checked against), and `globs`, shell globs on the full path (what yum takes:
    each at least as wide as the regex, which then narrows the answers)."""

    regex: str
    globs: tuple[str, ...] = ()


def supported(platform: Platform) -> bool:
    if platform.base is None or platform.backend != "docker":
        return False
    if platform.family == "debian":
        return platform.base.kind == "debootstrap"
    return platform.family == "redhat" and platform.base.kind == "image"


def unsupported(platform: Platform) -> str:
    """Why the platform's package index is not asked, and what to do instead."""
    if platform.backend != "docker":
        return (f"a {platform.backend} platform of the {platform.family} family: its package index is not asked "
                f"(Debian and Red Hat docker platforms only); write its system.{platform.family} lists by hand")
    if platform.family == "freebsd":
        return "the freebsd family's package index (pkg provides) is not asked; write its system.freebsd lists by hand"
    return (f"a {platform.family} platform on a {platform.base.kind if platform.base else 'missing'} base: "
            "looked up for Debian platforms made with debootstrap and Red Hat platforms on a registry image only; "
            f"write its system.{platform.family} lists by hand")


def compiler_package(platform: Platform, name: str) -> str:
    """The package that gives compiler `name` (g++) on the platform's family."""
    return COMPILERS.get(platform.family, {}).get(name, name)


def base_reference(platform: Platform, registry_mirror: str | None = None) -> str:
    """The local name of the platform's base image, as the docker backend makes or pulls it."""
    assert platform.base is not None
    if platform.base.kind == "debootstrap":
        return base_tag(platform.base.value)
    return (registry_mirror or "") + platform.base.value


def _has_os_stage(platform: Platform) -> bool:
    return re.search(r"(?im)^\s*FROM\s+\S+\s+AS\s+os\s*$", dockerfile(platform).read_text(encoding="utf-8")) is not None


def lookup_image(platform: Platform, log: Callable[[str], None] = lambda line: None,
                 registry_mirror: str | None = None) -> str:
    """The id of the platform's look-up image (apt-file with the suite's Contents index, or
    yum's cache with the repositories' file lists)."""
    if not supported(platform):
        raise ImageError(f"{platform.name}: which package provides a file is not looked up here: {unsupported(platform)}")
    assert platform.base is not None
    client = engine.client(platform.engine)
    base = base_reference(platform, registry_mirror)
    base_id = engine.image_id(client, base)
    if base_id is None:
        raise ImageError(f"{platform.name}: no base image {base} yet", hint="make the platform's images first: "
                         f"python -m builder images --platform {platform.name}")
    text, start = LOOKUP_DOCKERFILE, base
    what = f"apt-file and the {platform.base.value} Contents index"
    if platform.family == "redhat":
        text, what = RPM_LOOKUP_DOCKERFILE, f"yum's cache of the {platform.base.value} repositories with their file lists"
        if _has_os_stage(platform):  # the repositories the build installs from (images/centos: the vault)
            start = engine.build_image(client, platform, platform.image_dir, "os", f"{LOOKUP_REPOSITORY}:{platform.name}-os",
                                       {"BASE": base})
    start_id = base_id if start == base else start
    digest = hashlib.sha256((text + start_id).encode()).hexdigest()[:12]
    tag = f"{LOOKUP_REPOSITORY}:{platform.base.value.replace(':', '-').replace('/', '-')}-{digest}"
    if engine.image_id(client, tag) is None:
        log(f"making the package look-up image {tag} ({what}, once)")
    return engine.image_from_text(client, text, tag, {"BASE": start}, "package look-up")


def search(platform: Platform, queries: Mapping[str, Query], log: Callable[[str], None] = lambda line: None,
           registry_mirror: str | None = None) -> dict[str, list[Found]]:
    """For each key, the packages whose files match its query (regex against the full path,
    e.g. `/libpq-fe\\.h$`), from one `apt-file search` or one `yum -C provides` in the look-up image."""
    if not queries:
        return {}
    image = lookup_image(platform, log, registry_mirror)
    argv = search_argv(platform.family, queries)
    code, output = engine.run_once(engine.client(platform.engine), image, argv)
    tool = argv[0]
    if code not in (0, 1):  # 1: nothing matched
        raise ImageError(f"{platform.name}: {tool} {argv[1] if tool == 'apt-file' else 'provides'} failed (exit {code}): "
                         f"{output.strip()[-300:]}")
    answers = parse_yum_provides(output) if platform.family == "redhat" else parse_apt_file(output)
    return match(answers, queries)


def search_argv(family: str, queries: Mapping[str, Query]) -> list[str]:
    """The one command that asks the family's index for every query."""
    if family == "redhat":
        globs = [g for q in queries.values() for g in q.globs]
        return ["yum", "-C", "--noplugins", "provides", *dict.fromkeys(globs)]
    patterns = [q.regex for q in queries.values()]
    # apt-file takes a POSIX ERE (no (?:...)) and reads a `$` only at the very end of it.
    ends = all(p.endswith("$") for p in patterns)
    joined = "(" + "|".join(p.removesuffix("$") if ends else p for p in patterns) + (")$" if ends else ")")
    return ["apt-file", "search", "--regexp", joined]


def parse_apt_file(output: str) -> list[Found]:
    """`package: /path` lines."""
    found = []
    for line in output.splitlines():
        package, sep, path = line.partition(": ")
        if sep:
            found.append(Found(package.strip(), path.strip()))
    return found


# yum 3.2's provides: a block per package, `[EPOCH:]NAME-VERSION-RELEASE.ARCH : summary` (the
# summary wrapped onto `   : ...` lines), then `Repo        : base`, `Matched from:` and one
# `Filename    : /path` per matching file (or `Other : ...` for a capability).
_NEVRA = re.compile(r"^(?:\d+:)?(?P<name>\S+)-(?P<version>[^\s-]+)-(?P<release>[^\s-]+)\.(?P<arch>[A-Za-z0-9_]+)\s+:")
_FILENAME = re.compile(r"^Filename\s*:\s*(?P<path>/\S.*?)\s*$")


def parse_yum_provides(output: str) -> list[Found]:
    """Found(NAME, path, arch) for every `Filename :` line of `yum provides`, under its package."""
    found: list[Found] = []
    current: tuple[str, str] | None = None
    for line in output.splitlines():
        nevra = _NEVRA.match(line)
        if nevra:
            current = (nevra["name"], nevra["arch"])
            continue
        filename = _FILENAME.match(line)
        if filename and current is not None:
            found.append(Found(current[0], filename["path"], current[1]))
    return list(dict.fromkeys(found))


def match(answers: Iterable[Found], queries: Mapping[str, Query]) -> dict[str, list[Found]]:
    """Each query's answers: those whose path its regex finds."""
    found: dict[str, list[Found]] = {key: [] for key in queries}
    compiled = {key: re.compile(q.regex) for key, q in queries.items()}
    for answer in answers:
        for key, pattern in compiled.items():
            if pattern.search(answer.path):
                found[key].append(answer)
    return found


def best(found: Sequence[Found], prefer_dev: bool, family: str = "debian") -> str | None:
    """The one package to name: a -dev (Red Hat: -devel) package for build-time files (headers,
    config tools, .so links, .pc files), never a debug or cross one; on Red Hat an x86_64 or
    noarch one where there is one (not its i386/i686 twin); then the shortest name."""
    if family == "redhat":
        hits = [f for f in found if not re.search(r"-debuginfo$|-debugsource$", f.package)]
        native = [f for f in hits if f.arch in (ARCH, "noarch")]
        names = [f.package for f in (native or hits)]
        dev = "-devel"
    else:
        names = [f.package for f in found
                 if not re.search(r"-dbg$|-dbgsym$|-cross$|^lib32|^libx32|^lib64|-i386-", f.package)]
        dev = "-dev"
    if not names:
        return None
    if prefer_dev:
        names = [n for n in names if n.endswith(dev)] or names
    return sorted(set(names), key=lambda n: (len(n), n))[0]


_OWNERS = {"debian": r"""
for s in "$@"; do
  p=$(ldconfig -p | awk -v s="$s" '$1 == s { print $NF; exit }')
  if [ -z "$p" ]; then echo "missing $s"; continue; fi
  r=$(readlink -f "$p")
  o=$(dpkg -S "$p" 2>/dev/null || dpkg -S "$r" 2>/dev/null || dpkg -S "*/$s" 2>/dev/null | head -n 1)
  echo "found $s $p ${o%%:*}"
done
""", "redhat": r"""
for s in "$@"; do
  p=$(ldconfig -p | awk -v s="$s" '$1 == s && /x86-64/ { print $NF; exit }')
  [ -n "$p" ] || p=$(ldconfig -p | awk -v s="$s" '$1 == s { print $NF; exit }')
  if [ -z "$p" ]; then echo "missing $s"; continue; fi
  r=$(readlink -f "$p")
  o=$(rpm -qf --qf '%{NAME}\n' "$p" 2>/dev/null) || o=$(rpm -qf --qf '%{NAME}\n' "$r" 2>/dev/null) || o=""
  echo "found $s $p $(echo "$o" | head -n 1)"
done
"""}
_INSTALLED = {"debian": ["dpkg-query", "-W", "-f", "${Package}\\n"], "redhat": ["rpm", "-qa", "--qf", "%{NAME}\\n"]}
_TOOL = {"debian": "dpkg", "redhat": "rpm"}


def owners(image: str, sonames: Iterable[str], where: Engine = engine.DEFAULT, family: str = "debian"
           ) -> dict[str, tuple[str, str | None]]:
    """soname -> (its path in `image`, the installed package that owns it, or None)."""
    names = sorted(set(sonames))
    if not names:
        return {}
    code, output = engine.run_once(engine.client(where), image, ["sh", "-c", _OWNERS[family], "sh", *names])
    if code != 0:
        raise ImageError(f"asking {_TOOL[family]} which packages own {', '.join(names)} failed (exit {code}): {output[-300:]}")
    return parse_owners(output)


def parse_owners(output: str) -> dict[str, tuple[str, str | None]]:
    result: dict[str, tuple[str, str | None]] = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "found":
            result[parts[1]] = (parts[2], parts[3] if len(parts) > 3 and parts[3] else None)
        elif len(parts) == 2 and parts[0] == "missing":
            result[parts[1]] = ("", None)
    return result


def installed(image: str, where: Engine = engine.DEFAULT, family: str = "debian") -> set[str]:
    """The names of the packages installed in `image`."""
    argv = _INSTALLED[family]
    code, output = engine.run_once(engine.client(where), image, argv)
    if code != 0:
        raise ImageError(f"{argv[0]} in {image[:19]} failed (exit {code}): {output[-300:]}")
    return {line.strip() for line in output.splitlines() if line.strip()}


def soname_query(soname: str) -> Query:
    """The files named `soname` anywhere (a library directory is preferred after)."""
    return Query("/" + re.escape(soname) + "$", (f"*/{glob_literal(soname)}",))


def glob_literal(text: str) -> str:
    """`text` as a literal in a shell glob (yum's): each special character in a class of its own."""
    return "".join(f"[{c}]" if c in "*?[]" else c for c in text)


def soname_packages(platform: Platform, sonames: Iterable[str],
                    log: Callable[[str], None] = lambda line: None, registry_mirror: str | None = None) -> dict[str, str]:
    """soname -> the platform's package that ships it (for naming what a runtime image lacks)."""
    names = sorted(set(sonames))
    if not names or not supported(platform):
        return {}
    found = search(platform, {s: soname_query(s) for s in names}, log, registry_mirror)
    libs_at = r"^/(usr/)?lib(64)?/" if platform.family == "redhat" else r"^/(usr/)?lib/"
    answer = {}
    for soname, hits in found.items():
        libs = [h for h in hits if re.search(libs_at, h.path)]
        name = best(libs or hits, prefer_dev=False, family=platform.family)
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

"""What a platform's output folder offers an application: its artifacts, verified against the
manifest, with what each provides (top-level modules) and needs (its requirements), and the
choice of artifacts for a list of requirements."""
from __future__ import annotations

import hashlib
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import InvalidMarker, Marker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from ..errors import ConfigError, NotPublished
from ..fetch import sha256_file
from ..matrix.model import Format, Matrix
from .publish import read_manifest


@dataclass(frozen=True)
class Artifact:
    """One published file and what its metadata says."""

    filename: str
    path: Path
    package: str
    version: str
    format: Format
    sha256: str
    top_level: tuple[str, ...]  # the top-level modules it installs
    requires: tuple[str, ...]  # requirement strings, markers included
    runtime_image: str = ""  # the image it was tested in
    # What it provides below its namespace packages: ("zope.interface",) and ("zope",) for
    # zope.interface; a distribution without a namespace provides its top-level names.
    provides: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()

    @property
    def project(self) -> str:
        return canonicalize_name(self.package)

    def runs_on(self, python: str) -> bool:
        """Can the target's Python (e.g. "2.7.18") use it? Eggs say their Python in their name,
        wheels in their tags."""
        major, minor = python.split(".")[:2]
        if self.format == "egg":
            found = re.search(r"-py(\d+)\.(\d+)", self.filename)
            return found is None or (found.group(1), found.group(2)) == (major, minor)
        tags = parse_wheel_filename(self.filename)[3]
        ok = {f"cp{major}{minor}", f"py{major}{minor}", f"py{major}"}
        return any(tag.interpreter in ok for tag in tags)


def build_hint(matrix: Matrix, project: str, platform: str) -> str:
    """The command that publishes a package for a platform, or how to declare it first."""
    for package in matrix.packages:
        if canonicalize_name(package.name) == project:
            return f"python -m builder all --package {package.name} --platform {platform}"
    return f"declare {project} in {matrix.label}'s packages, then: python -m builder all --package {project} --platform {platform}"


def load(matrix: Matrix, platform: str) -> list[Artifact]:
    """Every artifact the platform's manifest lists, each hashed against it before its metadata
    is read: a file that changed since it was published is refused, never used."""
    output = matrix.settings.output
    manifest = read_manifest(output, platform)
    if manifest is None or not manifest.artifacts:
        raise NotPublished(
            f"nothing is published for {platform} in {output}/{platform}/",
            hint=f"build and publish its packages: python -m builder all --platform {platform}",
        )
    artifacts = []
    for name, entry in manifest.artifacts.items():
        path = output / platform / name
        verify(path, entry.sha256)
        top_level, requires, provides, namespaces = metadata(path, entry.format)
        artifacts.append(Artifact(name, path, entry.package, entry.version, entry.format, entry.sha256,
                                  top_level, requires, entry.runtime_image, provides, namespaces))
    return artifacts


def verify(path: Path, sha256: str) -> None:
    try:
        actual = sha256_file(path)
    except OSError as exc:
        raise NotPublished(f"{path} is listed in its manifest but cannot be read ({exc.strerror})",
                           hint="python -m builder verify shows what is wrong; publish it again") from exc
    if actual != sha256:
        raise NotPublished(f"{path} does not match its manifest (sha256 {actual}, manifest says {sha256})",
                           hint="it changed after it was published: publish it again with python -m builder all --force")


def copy_verified(artifact: Artifact, dest: Path) -> Path:
    """Copy an artifact where a guest gets it, hashing the bytes that are copied: what the
    guest installs is what the manifest vouches for, even if the file changed since load()."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with open(artifact.path, "rb") as source, open(dest, "wb") as sink:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
            sink.write(block)
    if digest.hexdigest() != artifact.sha256:
        dest.unlink()
        verify(artifact.path, artifact.sha256)  # raises, saying so
    return dest


# --- metadata ----------------------------------------------------------------------------------

def metadata(path: Path, fmt: Format) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(top-level modules, requirements, what it provides, its namespace packages) from an egg's
    EGG-INFO or a wheel's .dist-info and the files it installs (see _layout)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if fmt == "egg":
                info = "EGG-INFO/"
                requires = _egg_requires(_read(archive, info + "requires.txt"))
            else:
                info = next((n.split("/")[0] + "/" for n in names if n.split("/")[0].endswith(".dist-info")), "")
                requires = _wheel_requires(_read(archive, info + "METADATA"))
            files = names
            if fmt == "wheel" and info + "RECORD" in names:
                files = [line.split(",")[0] for line in _read(archive, info + "RECORD").splitlines()]
            listed = _read(archive, info + "top_level.txt")
            if listed.strip():
                top = [line.strip().replace("/", ".").split(".")[0] for line in listed.splitlines()]
            else:
                top = _tops(files)
            declared = _lines(_read(archive, info + "namespace_packages.txt"))
            for name in names:
                if "/" not in name and name.endswith("-nspkg.pth"):
                    declared += _nspkg(_read(archive, name))
                elif name.count("/") and name.endswith("/__init__.py") and _extends_path(_read(archive, name)):
                    declared.append(name[: -len("/__init__.py")].replace("/", "."))  # pkgutil-style
    except (OSError, zipfile.BadZipFile, KeyError) as exc:
        raise NotPublished(f"{path} cannot be read as a {fmt}: {exc}", hint="publish it again") from exc
    tops = tuple(sorted({t for t in top if t}))
    provides, namespaces = _layout(files, tops, declared)
    return tops, tuple(requires), provides, namespaces


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _nspkg(text: str) -> list[str]:
    """The namespaces a -nspkg.pth makes, one per line: os.path.join(sitedir, *('google', 'cloud'))."""
    found = []
    for line in text.splitlines():
        match = re.search(r"\*\(((?:\s*'[^']*'\s*,?)+)\)", line)
        if match:
            found.append(".".join(re.findall(r"'([^']*)'", match.group(1))))
    return found


def _extends_path(text: str) -> bool:
    """A pkgutil- or pkg_resources-style namespace's __init__.py: it only extends its __path__."""
    return "extend_path(" in text or "declare_namespace(" in text


def _layout(files: Iterable[str], tops: Sequence[str], declared: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(what it provides, its namespace packages). A namespace package is declared
    (namespace_packages.txt, a -nspkg.pth, an __init__.py that extends its __path__) or a folder
    without __init__ above modules (PEP 420); a distribution provides the modules and packages
    directly below its namespaces, and its other top-level names."""
    packages: set[str] = set()
    children: dict[str, set[str]] = {}
    for path in files:
        parts = path.strip("/").split("/")
        if not parts[0] or parts[0] == "EGG-INFO" or parts[0].endswith((".dist-info", ".egg-info", ".data")):
            continue
        base = parts[-1]
        if base.endswith(".py"):
            stem = base[:-3]
        elif base.endswith((".pyc", ".so", ".pyd")):
            stem = base.split(".")[0]
        else:
            continue
        dotted = parts[:-1] + ([] if stem == "__init__" else [stem])
        if not dotted or "__pycache__" in dotted or not all(n.isidentifier() for n in dotted):
            continue
        for i in range(1, len(dotted)):
            children.setdefault(".".join(dotted[:i]), set()).add(".".join(dotted[: i + 1]))
        if stem == "__init__":
            packages.add(".".join(dotted))
    spaces = {".".join(d.split(".")[: i + 1]) for d in declared for i in range(len(d.split(".")))}
    provides: set[str] = set()
    namespaces: set[str] = set()

    def visit(name: str) -> None:
        if name in children and (name in spaces or name not in packages):
            namespaces.add(name)
            for child in sorted(children[name]):
                visit(child)
        else:
            provides.add(name)

    for top in tops:
        visit(top)
    return tuple(sorted(provides)), tuple(sorted(namespaces))


def _read(archive: zipfile.ZipFile, name: str) -> str:
    try:
        return archive.read(name).decode("utf-8", "replace")
    except KeyError:
        return ""


def _tops(paths: Iterable[str]) -> list[str]:
    """Top-level module names from the files a distribution installs."""
    tops = []
    for path in paths:
        parts = path.strip("/").split("/")
        first = parts[0]
        if not first or first == "EGG-INFO" or first.endswith((".dist-info", ".egg-info", ".data")) or ".." in parts:
            continue
        if len(parts) > 1:
            tops.append(first)
        elif first.endswith(".py"):
            tops.append(first[:-3])
        elif first.endswith((".so", ".pyd")):
            tops.append(first.split(".")[0])
    return [t for t in tops if t.isidentifier()]


def _egg_requires(text: str) -> list[str]:
    """requires.txt: plain lines, then [extra], [:marker] or [extra:marker] sections. Extras are
    not asked for; a [:marker] section's lines apply where the marker holds."""
    found = []
    marker = ""
    skip = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            extra, _, marker = line[1:-1].partition(":")
            skip = bool(extra.strip())
            continue
        if not skip:
            found.append(f"{line}; {marker}" if marker else line)
    return found


def _wheel_requires(text: str) -> list[str]:
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:")]


# --- requirements --------------------------------------------------------------------------------

def parse_requirements(path: Path, seen: frozenset[Path] = frozenset()) -> list[tuple[str, Requirement]]:
    """(file:line, requirement) for each line of a requirements file; `-r FILE` is followed,
    `--hash` options are dropped (builder's artifacts are checked against its own manifest)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the requirements file {path}: {exc.strerror}") from exc
    if path.resolve() in seen:
        raise ConfigError(f"{path} includes itself through -r")
    found: list[tuple[str, Requirement]] = []
    logical = ""
    start = 0
    for number, raw in enumerate(text.splitlines() + [""], 1):
        if not logical:
            start = number
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        line = (logical + line).strip()
        logical = ""
        if not line:
            continue
        where = f"{path}:{start}"
        tokens = [t for t in line.split() if not t.startswith("--hash")]
        if tokens[0] in ("-r", "--requirement") and len(tokens) == 2:
            found += parse_requirements(path.parent / tokens[1], seen | {path.resolve()})
            continue
        if tokens[0].startswith("-"):
            raise ConfigError(f"option {tokens[0]} is not supported here", location=where,
                              hint="list one requirement per line (NAME or NAME==VERSION), or -r FILE")
        try:
            found.append((where, Requirement(" ".join(tokens))))
        except InvalidRequirement as exc:
            raise ConfigError(f"not a requirement: {line!r} ({exc})", location=where) from exc
    return found


def marker_holds(marker: Marker | None, python: str) -> bool:
    if marker is None:
        return True
    major_minor = ".".join(python.split(".")[:2])
    try:
        return marker.evaluate({"python_version": major_minor, "python_full_version": python, "extra": ""})
    except (InvalidMarker, UndefinedComparison, UndefinedEnvironmentName):
        return True  # a marker we cannot judge: ask for the requirement rather than drop it


@dataclass(frozen=True)
class Missing:
    """A requirement no published artifact satisfies, why, and what would publish one."""

    requirement: str
    needed_by: str  # "requirements.txt:3" or "python-dateutil 2.9.0.post0"
    why: str
    hint: str


def precheck(matrix: Matrix, platform: str, artifacts: Sequence[Artifact],
             requirements: Sequence[tuple[str, Requirement]]) -> None:
    """Refuse, before any guest starts, a requirement (without a marker, which needs the
    target's Python to judge) of which nothing at all is published."""
    projects = {a.project for a in artifacts}
    missing = [Missing(str(req), where, "no published artifact", build_hint(matrix, canonicalize_name(req.name), platform))
               for where, req in requirements if req.marker is None and canonicalize_name(req.name) not in projects]
    if missing:
        raise _refusal(missing)


def _refusal(missing: Sequence[Missing]) -> NotPublished:
    return NotPublished(
        "; ".join(f"{m.requirement} (needed by {m.needed_by}): {m.why}" for m in missing),
        hint="; ".join(dict.fromkeys(m.hint for m in missing)),
    )


def resolve(
    matrix: Matrix,
    platform: str,
    artifacts: Sequence[Artifact],
    requirements: Sequence[tuple[str, Requirement]],
    fmt: Format,
    python: str,
) -> list[Artifact]:
    """The artifacts to install for the requirements and, through each artifact's own metadata,
    what they require: the newest published version that satisfies each, in the format asked,
    for the target's Python. Raises NotPublished naming every requirement left unsatisfied."""
    usable: dict[str, list[Artifact]] = {}
    for artifact in artifacts:
        usable.setdefault(artifact.project, []).append(artifact)
    chosen: dict[str, Artifact] = {}
    missing: list[Missing] = []
    todo = [(where, req) for where, req in requirements]
    while todo:
        where, req = todo.pop(0)
        if not marker_holds(req.marker, python):
            continue
        project = canonicalize_name(req.name)
        if project in chosen:
            if not req.specifier.contains(chosen[project].version, prereleases=True):
                missing.append(Missing(str(req), where, f"{chosen[project].package} {chosen[project].version} is "
                                       "chosen for another requirement", build_hint(matrix, project, platform)))
            continue
        found = _best(usable.get(project, []), req, fmt, python)
        if isinstance(found, str):
            missing.append(Missing(str(req), where, found, build_hint(matrix, project, platform)))
            continue
        chosen[project] = found
        for text in found.requires:
            try:
                todo.append((f"{found.package} {found.version}", Requirement(text)))
            except InvalidRequirement:
                missing.append(Missing(text, f"{found.package} {found.version}", "its metadata names an invalid "
                                       "requirement", build_hint(matrix, project, platform)))
    if missing:
        raise _refusal(missing)
    return list(chosen.values())


def newest(artifacts: Sequence[Artifact], fmt: Format, python: str) -> list[Artifact]:
    """With no requirements given: the newest usable version of every published package."""
    projects = sorted({a.project for a in artifacts})
    found = [_best([a for a in artifacts if a.project == p], Requirement(p), fmt, python) for p in projects]
    return [a for a in found if isinstance(a, Artifact)]


def _best(candidates: Sequence[Artifact], req: Requirement, fmt: Format, python: str) -> Artifact | str:
    """The newest candidate satisfying req, or why there is none."""
    if not candidates:
        return "no published artifact"
    versions = [a for a in candidates if req.specifier.contains(a.version, prereleases=True)]
    if not versions:
        published = ", ".join(sorted({a.version for a in candidates}, key=_version))
        return f"published versions are {published}"
    formats = [a for a in versions if a.format == fmt]
    if not formats:
        return f"published only as {' and '.join(sorted({a.format for a in versions}))}, not as {fmt}"
    runnable = [a for a in formats if a.runs_on(python)]
    if not runnable:
        return f"no published {fmt} of it is for Python {'.'.join(python.split('.')[:2])}"
    return max(runnable, key=lambda a: _version(a.version))


def _version(text: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        return Version("0")


def providers(artifacts: Sequence[Artifact]) -> Mapping[str, list[Artifact]]:
    """What each artifact provides, and each namespace package -> the artifacts that install it."""
    found: dict[str, list[Artifact]] = {}
    for artifact in artifacts:
        for name in (*artifact.provides, *artifact.namespaces):
            found.setdefault(name, []).append(artifact)
    return found


def providers_of(module: str, artifacts: Sequence[Artifact]) -> list[Artifact]:
    """The artifacts that provide a module: of the longest name above it (or itself) that some
    artifact provides (zope.interface.declarations: zope.interface's); for a namespace package
    itself (zope), every artifact that shares it; none for a module below a namespace that no
    artifact provides (zope.component)."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        found = [a for a in artifacts if name in a.provides]
        if found:
            return found
    return [a for a in artifacts if module in a.namespaces]


def namespace_of(module: str, artifacts: Sequence[Artifact]) -> tuple[str, list[Artifact]] | None:
    """The namespace package a module sits in and the artifacts sharing it, if it is in one."""
    parts = module.split(".")
    for end in range(len(parts) - 1, 0, -1):
        name = ".".join(parts[:end])
        sharing = [a for a in artifacts if name in a.namespaces]
        if sharing:
            return name, sharing
    return None

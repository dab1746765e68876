"""What an sdist says about itself, read from its files on the host (nothing of it is run).

setup.py is parsed, never executed: a `setup_requires=[...]` or `install_requires=[...]` that is
a literal list is read; one computed at run time is not (and the caller says so).
"""
from __future__ import annotations

import ast
import configparser
import email.parser
import io
import re
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import BuilderError

MAX_MEMBER = 4 << 20  # the metadata files read are small; a 4 MiB setup.py is not metadata
# Switches that turn a silent pure-Python fallback into an error. The environment ones are set
# for the probe and written into the entry; the others are said in a comment.
# Each with how setup.py names it: PyYAML 6 spells the libyaml one 'PYYAML_FORCE_{0}'.format(...).
ENV_SWITCHES = {"REQUIRE_SPEEDUPS": ("1", r"REQUIRE_SPEEDUPS"), "PYYAML_FORCE_LIBYAML": ("1", r"PYYAML_FORCE_(LIBYAML|\{)"),
                "PYYAML_FORCE_CYTHON": ("1", r"PYYAML_FORCE_(CYTHON|\{)")}
SWITCHES = {"--with-libyaml": "setup_args: [--with-libyaml] makes a missing libyaml an error"}


@dataclass
class Facts:
    """The sdist's own declarations, as far as they can be read without running it."""

    filename: str
    has_setup_py: bool = False
    build_system: list[str] | None = None  # pyproject.toml [build-system] requires
    setup_requires: list[str] = field(default_factory=list)
    setup_requires_dynamic: bool = False  # setup.py passes setup_requires as something not literal
    install_requires: list[str] = field(default_factory=list)
    python_requires: str | None = None
    classifiers: list[str] = field(default_factory=list)
    pyx_without_c: list[str] = field(default_factory=list)
    compiled_sources: list[str] = field(default_factory=list)  # .c/.cpp/.pyx members
    switches: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # ENV_SWITCHES its setup.py reads
    uses_setuptools: bool = False  # setup.py imports setuptools itself (bdist_egg without the shim)

    def python_ok(self, version: tuple[int, int]) -> bool | None:
        """Whether the sdist declares support for Python `version`: True, False, or None (it does not say)."""
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        if self.python_requires:
            try:
                return SpecifierSet(self.python_requires).contains(f"{version[0]}.{version[1]}", prereleases=True)
            except InvalidSpecifier:
                pass
        majors = {m.group(1) for c in self.classifiers if (m := re.match(r"Programming Language :: Python :: (\d)", c))}
        if majors:
            return str(version[0]) in majors
        return None


class _Archive:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            if path.name.endswith(".zip"):
                self._zip: zipfile.ZipFile | None = zipfile.ZipFile(path)
                self._tar: tarfile.TarFile | None = None
                self.names = [n for n in self._zip.namelist() if not n.endswith("/")]
            else:
                self._zip = None
                self._tar = tarfile.open(path)
                self.names = [m.name for m in self._tar.getmembers() if m.isfile()]
        except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
            raise BuilderError(f"cannot read the sdist {path.name}: {exc}", hint="it is not a valid archive") from exc
        tops = {PurePosixPath(n).parts[0] for n in self.names if PurePosixPath(n).parts}
        self.top = tops.pop() if len(tops) == 1 else ""

    def read(self, relative: str) -> str | None:
        name = f"{self.top}/{relative}" if self.top else relative
        try:
            if self._zip is not None:
                info = self._zip.getinfo(name)
                if info.file_size > MAX_MEMBER:
                    return None
                return self._zip.read(name).decode("utf-8", "replace")
            assert self._tar is not None
            member = self._tar.getmember(name)
            if not member.isfile() or member.size > MAX_MEMBER:
                return None
            handle = self._tar.extractfile(member)
            return handle.read().decode("utf-8", "replace") if handle else None
        except (KeyError, tarfile.TarError, OSError):
            return None

    def relative(self) -> list[str]:
        cut = len(self.top) + 1 if self.top else 0
        return [n[cut:] for n in self.names]


def read(path: Path) -> Facts:
    archive = _Archive(path)
    facts = Facts(path.name)
    files = archive.relative()
    facts.has_setup_py = "setup.py" in files
    _pkg_info(archive.read("PKG-INFO"), facts)
    _pyproject(archive.read("pyproject.toml"), facts)
    _setup_cfg(archive.read("setup.cfg"), facts)
    setup_py = archive.read("setup.py")
    if setup_py is not None:
        _setup_py(setup_py, facts)
        facts.switches = [note for word, note in SWITCHES.items() if word in setup_py]
        facts.env = {word: value for word, (value, named) in ENV_SWITCHES.items() if re.search(rf"[\'\"]{named}", setup_py)}
        facts.uses_setuptools = bool(re.search(r"^\s*(from\s+setuptools\b|import\s+setuptools\b)", setup_py, re.M))
    if not facts.install_requires:
        requires = next((f for f in files if re.fullmatch(r"[^/]+\.egg-info/requires\.txt|src/[^/]+\.egg-info/requires\.txt", f)), None)
        if requires:
            facts.install_requires = _requires_txt(archive.read(requires) or "")
    stems = {f.rsplit(".", 1)[0] for f in files if f.endswith((".c", ".cpp"))}
    facts.compiled_sources = [f for f in files if f.endswith((".c", ".cpp", ".cc", ".pyx"))]
    facts.pyx_without_c = sorted(f for f in files if f.endswith(".pyx") and f[:-4] not in stems)
    return facts


def _pkg_info(text: str | None, facts: Facts) -> None:
    if not text:
        return
    message = email.parser.Parser().parsestr(text, headersonly=True)
    facts.python_requires = message.get("Requires-Python") or facts.python_requires
    facts.classifiers = [str(c) for c in message.get_all("Classifier") or []]
    facts.install_requires = [str(r) for r in message.get_all("Requires-Dist") or []]


def _pyproject(text: str | None, facts: Facts) -> None:
    if not text:
        return
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return
    system = data.get("build-system")
    if isinstance(system, dict) and isinstance(system.get("requires"), list):
        facts.build_system = [str(r) for r in system["requires"]]
    found = data.get("project")
    project: dict = found if isinstance(found, dict) else {}
    if not facts.python_requires and isinstance(project.get("requires-python"), str):
        facts.python_requires = project["requires-python"]
    if not facts.install_requires and isinstance(project.get("dependencies"), list):
        facts.install_requires = [str(r) for r in project["dependencies"]]


def _lines(value: str) -> list[str]:
    return [line.strip() for line in re.split(r"[\n;]", value) if line.strip() and not line.strip().startswith("#")]


def _setup_cfg(text: str | None, facts: Facts) -> None:
    if not text:
        return
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        return
    if not parser.has_section("options"):
        return
    options = parser["options"]
    if "setup_requires" in options:
        facts.setup_requires += _lines(options["setup_requires"].replace(";", "\n"))
    if "python_requires" in options and not facts.python_requires:
        facts.python_requires = options["python_requires"].strip()
    if "install_requires" in options and not facts.install_requires:
        facts.install_requires = [r for r in options["install_requires"].splitlines() if r.strip()]


def _setup_py(text: str, facts: Facts) -> None:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        try:  # Python 2 only setup.py: read the keywords by their text
            tree = ast.parse(re.sub(r"^(\s*)print\b.*$", r"\1pass", text, flags=re.M))
        except (SyntaxError, ValueError):
            return
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for keyword in node.keywords:
            if keyword.arg not in ("setup_requires", "install_requires", "python_requires"):
                continue
            try:
                value = ast.literal_eval(keyword.value)
            except (ValueError, SyntaxError, TypeError):
                if keyword.arg == "setup_requires":
                    facts.setup_requires_dynamic = True
                continue
            if keyword.arg == "python_requires" and isinstance(value, str) and not facts.python_requires:
                facts.python_requires = value
            elif keyword.arg == "setup_requires" and isinstance(value, list | tuple | str):
                facts.setup_requires += [value] if isinstance(value, str) else [str(v) for v in value]
            elif keyword.arg == "install_requires" and isinstance(value, list | tuple) and not facts.install_requires:
                facts.install_requires = [str(v) for v in value]


def _requires_txt(text: str) -> list[str]:
    """requires.txt: plain lines, then [extra] and [:marker] sections; extras are left out."""
    found, section = [], ""
    for line in io.StringIO(text):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        if not section:
            found.append(line)
        elif section.startswith(":"):
            found.append(f"{line}; {section[1:]}")
    return found


def egg_support(facts: Facts) -> str:
    if not facts.has_setup_py:
        return "no setup.py: the egg is made from the wheel by setuptools' wheel-to-egg conversion"
    if facts.uses_setuptools:
        return "bdist_egg works directly (its setup.py imports setuptools; builder's shim changes nothing)"
    return "its setup.py uses plain distutils: bdist_egg needed the setuptools shim"

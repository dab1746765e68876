"""Read matrix.yaml into the frozen model, or raise ConfigError naming the file, the line and the key.

The YAML is composed, not constructed: every value keeps its line and its original text, so
`version: 1.10` stays "1.10" and each error can say `matrix.yaml:42: packages[2].sha256: ...`.
"""
from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, Literal, NoReturn, TypeVar, cast
from urllib.parse import urlsplit

import yaml
from packaging.utils import canonicalize_name

from .errors import ConfigError
from .model import (
    BACKENDS, FAMILIES, FORMATS, Base, BackendName, BuildSpec, Family, Format, Limits, Matrix, Package, Pin,
    Platform, Settings, SystemPackages,
)

T = TypeVar("T")

_TAG = "tag:yaml.org,2002:"
# Scalars read as text: a version may be written 1.10 (a float) or a date-like 2024-01-02.
_TEXT_TAGS = {_TAG + t for t in ("str", "int", "float", "timestamp")}
_KINDS = {"null": "nothing", "bool": "a boolean", "int": "a number", "float": "a number", "str": "a string",
          "timestamp": "a date"}

_PLATFORM_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
_PROJECT_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
# Not PEP 440: old sdists predate it, and the version is only compared with file names.
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# OS package lists reach the Dockerfile as one space-separated build argument.
_OS_PACKAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_:~=@/-]*")
_WORD = re.compile(r"[^\s\x00]+")
_MEMORY = re.compile(r"[0-9]+[kmg]?")
_MAX_INT = 2**31 - 1
_URL_SCHEMES = ("http", "https", "file")
_CONSTRUCTOR = yaml.constructor.SafeConstructor()  # YAML's own reading of booleans and integers

# deploy: targets are read by builder.deploy.targets, with the helpers below.
_TOP_KEYS = ("settings", "platforms", "packages", "deploy")
_SETTINGS_KEYS = ("index_url", "debian_mirror", "registry_mirror", "output", "cache", "work")
_PLATFORM_KEYS = ("name", "backend", "family", "python", "base", "image", "machines", "enabled", "tools", "context", "limits")
_PIN_KEYS = ("name", "version", "sha256", "url", "path")
_OVERRIDE_KEYS = (
    "version", "sha256", "url", "path", "build_requires", "setup_args", "env", "extensions", "skip_imports", "test",
)
_PACKAGE_KEYS = ("name", *_OVERRIDE_KEYS, "formats", "system", "depends", "platforms", "overrides")
_ENV = {"index_url": "BUILDER_INDEX_URL", "debian_mirror": "BUILDER_DEBIAN_MIRROR",
        "registry_mirror": "BUILDER_REGISTRY_MIRROR", "cache": "BUILDER_CACHE"}


def load(path: str | os.PathLike[str]) -> Matrix:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"matrix file not found: {path} (run from the folder holding matrix.yaml or pass --matrix)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read matrix file {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError("the file is not UTF-8 text", location=f"{path.name}:{line}", hint="save it as UTF-8") from None
    return loads(text, path)


def loads(text: str, path: Path) -> Matrix:
    path = Path(os.path.abspath(path))
    doc = _Doc(path.name, path.parent)
    top = _At(_compose(text, doc), "", doc)
    if not isinstance(top.node, yaml.MappingNode):
        top.fail(f"expected a mapping with platforms: and packages:, got {_kind(top.node)}")
    fields = _mapping(top, _TOP_KEYS, required=("platforms", "packages"))
    settings = _settings(fields.get("settings"), doc)
    platforms = _platforms(fields["platforms"])
    packages = _packages(fields["packages"], platforms)
    return Matrix(path, settings, platforms, packages)


# -- reading nodes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Doc:
    label: str  # the file's name, for locations
    root: Path  # relative paths in the file are relative to its folder
    merged: dict[int, list[tuple[Any, Any]]] = field(default_factory=dict, compare=False)  # see _entries


@dataclass(frozen=True)
class _At:
    """A YAML node and where it is: its line and its path in the document (`packages[2].sha256`)."""

    node: Any
    path: str
    doc: _Doc

    @property
    def line(self) -> int:
        return int(self.node.start_mark.line) + 1

    @property
    def location(self) -> str:
        # A value from the environment has no line.
        return f"{self.doc.label}:{self.line}" if self.node.start_mark else self.doc.label

    def child(self, node: Any, step: str) -> _At:
        return _At(node, (self.path + step).lstrip("."), self.doc)

    def fail(self, message: str, hint: str | None = None) -> NoReturn:
        raise ConfigError(f"{self.path}: {message}" if self.path else message, location=self.location, hint=hint)


_YAML_HINT = "look for an unclosed bracket or quote, or wrong indentation, on that line or just above it"


def _loader() -> type:
    """libyaml's parser (when PyYAML has it) under PyYAML's own composer: the events come from C,
    about eight times faster on a big matrix (a 5,000-cell file loads in a fraction of a second
    instead of 1-2 s), while the nodes, their line marks and a too-deep file's RecursionError
    stay those of the pure-Python composer."""
    try:
        from yaml.cyaml import CParser
    except ImportError:
        return yaml.SafeLoader
    from yaml.composer import Composer
    from yaml.constructor import SafeConstructor
    from yaml.resolver import Resolver

    class Loader(Composer, CParser, SafeConstructor, Resolver):  # type: ignore[misc, valid-type]
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    return Loader


_LOADER = _loader()


def _compose(text: str, doc: _Doc) -> Any:
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        context = f" ({exc.context} at line {exc.context_mark.line + 1})" if exc.context and exc.context_mark else ""
        problem = exc.problem or exc.context or "malformed"
        raise ConfigError(f"invalid YAML: {problem}{context}", location=f"{doc.label}:{line}", hint=_YAML_HINT) from None
    except yaml.YAMLError as exc:
        position = getattr(exc, "position", 0)
        line = text[:position].count("\n") + 1 if isinstance(position, int) else 1
        raise ConfigError(f"invalid YAML: {exc}", location=f"{doc.label}:{line}", hint=_YAML_HINT) from None
    except RecursionError:
        raise ConfigError("invalid YAML: nested too deeply", location=f"{doc.label}:1") from None
    if node is None:
        raise ConfigError(
            "the file is empty", location=f"{doc.label}:1", hint="declare platforms: and packages: (see README.md)"
        )
    return node


def _kind(node: Any) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    tag = str(node.tag)
    return _KINDS.get(tag.removeprefix(_TAG), f"a {tag} value")


def _did_you_mean(word: str, options: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f"did you mean '{close[0]}'?" if close else None


def _entries(at: _At, within: frozenset[int] = frozenset()) -> list[tuple[Any, Any]]:
    """The mapping's (key, value) nodes; YAML merge keys (`<<: *defaults`) give way to its own keys."""
    if id(at.node) in within:
        at.fail("a << merge refers back to itself")
    # Remembered per node: merges of merges of the same anchors must not take exponential time.
    if id(at.node) in at.doc.merged:
        return at.doc.merged[id(at.node)]
    own: dict[str, tuple[Any, Any]] = {}
    merged: list[tuple[Any, Any]] = []
    for key, value in at.node.value:
        if key.tag == _TAG + "merge":
            for source in value.value if isinstance(value, yaml.SequenceNode) else [value]:
                if not isinstance(source, yaml.MappingNode):
                    at.child(key, "").fail(f"a << merge needs a mapping, got {_kind(source)}")
                merged += _entries(at.child(source, ""), within | {id(at.node)})
            continue
        if not isinstance(key, yaml.ScalarNode) or key.tag not in _TEXT_TAGS:
            at.child(key, "").fail(f"keys must be names, got {_kind(key)}")
        if key.value in own:
            at.child(key, "").fail(f"{key.value!r} is given twice (also at line {own[key.value][0].start_mark.line + 1})")
        own[key.value] = (key, value)
    for key, value in merged:
        own.setdefault(key.value, (key, value))
    at.doc.merged[id(at.node)] = list(own.values())
    return at.doc.merged[id(at.node)]


def _pairs(at: _At) -> list[tuple[_At, _At]]:
    """A mapping's (key, value); a value's path continues the mapping's: `packages[0].env.CFLAGS`."""
    if not isinstance(at.node, yaml.MappingNode):
        at.fail(f"expected a mapping, got {_kind(at.node)}")
    return [(at.child(key, ""), at.child(value, f".{key.value}")) for key, value in _entries(at)]


def _mapping(at: _At, keys: Collection[str], required: Sequence[str] = ()) -> dict[str, _At]:
    fields: dict[str, _At] = {}
    for key, value in _pairs(at):
        name = str(key.node.value)
        if name not in keys:
            hint = _did_you_mean(name, keys) or f"known keys: {', '.join(keys)}"
            raise ConfigError(f"{value.path}: unknown key", location=key.location, hint=hint)
        fields[name] = value
    for name in required:
        if name not in fields:
            at.fail(f"missing required key '{name}'")
    return fields


def _items(at: _At) -> list[_At]:
    if not isinstance(at.node, yaml.SequenceNode):
        value = at.node.value if isinstance(at.node, yaml.ScalarNode) else ""
        hint = f"write it as a list: [{value}]" if value and len(value) < 60 and "\n" not in value else None
        at.fail(f"expected a list, got {_kind(at.node)}", hint)
    return [at.child(node, f"[{i}]") for i, node in enumerate(at.node.value)]


def _list(at: _At, read: Callable[[_At], T], key: Callable[[T], str] | None = None) -> tuple[T, ...]:
    items = _items(at)
    values = [read(item) for item in items]
    if key is not None:
        seen: dict[str, _At] = {}
        for value, item in zip(values, items):
            if key(value) in seen:
                item.fail(f"{key(value)!r} is listed twice (also at line {seen[key(value)].line})")
            seen[key(value)] = item
    return tuple(values)


def _text(at: _At, empty: bool = False) -> str:
    node = at.node
    if not isinstance(node, yaml.ScalarNode) or node.tag not in _TEXT_TAGS:
        hint = f'quote it: "{node.value}"' if getattr(node, "tag", "") == _TAG + "bool" else None
        at.fail(f"expected a string, got {_kind(node)}", hint)
    if not empty and not node.value.strip():
        at.fail("must not be empty")
    return str(node.value)


def _matching(at: _At, pattern: re.Pattern[str], what: str, hint: str | None = None) -> str:
    value = _text(at)
    if not pattern.fullmatch(value):
        at.fail(f"{value!r} is not {what}", hint)
    return value


def _choice(at: _At, options: Sequence[str]) -> str:
    value = _text(at)
    if value not in options:
        at.fail(f"{value!r} is not one of {', '.join(options)}", _did_you_mean(value, options))
    return value


def _bool(at: _At) -> bool:
    if not isinstance(at.node, yaml.ScalarNode) or at.node.tag != _TAG + "bool":
        at.fail(f"expected true or false, got {_kind(at.node)}", "write true or false, unquoted")
    return bool(_CONSTRUCTOR.construct_yaml_bool(at.node))


def _int(at: _At) -> int:
    if not isinstance(at.node, yaml.ScalarNode) or at.node.tag != _TAG + "int":
        at.fail(f"expected a whole number, got {_kind(at.node)}", "write digits only, unquoted: e.g. 600")
    try:
        value = int(_CONSTRUCTOR.construct_yaml_int(at.node))
    except ValueError:
        value = 0
    if not 0 < value <= _MAX_INT:
        at.fail(f"must be a whole number from 1 to {_MAX_INT}", "e.g. 600")
    return value


def _path(at: _At) -> Path:
    value = _matching(at, re.compile(r"[^\x00]+"), "a path")
    # Lexical, not resolve(): no file system access, and symlinked folders keep the user's names.
    return Path(os.path.normpath(at.doc.root / Path(value).expanduser()))


def _url(at: _At) -> str:
    value = _matching(at, _WORD, "a URL")
    if urlsplit(value).scheme not in _URL_SCHEMES:
        at.fail(f"{value!r} is not a URL", f"start it with {' or '.join(s + '://' for s in _URL_SCHEMES)}")
    return value


# -- settings ---------------------------------------------------------------------------------


def _settings(at: _At | None, doc: _Doc) -> Settings:
    # `settings:` with every key commented out is null: the defaults.
    empty = at is None or isinstance(at.node, yaml.ScalarNode) and at.node.tag == _TAG + "null"
    fields = {} if at is None or empty else _mapping(at, _SETTINGS_KEYS)
    index_url = _env_or("index_url", fields, _url)
    debian_mirror = _env_or("debian_mirror", fields, _url)
    registry_mirror = _env_or("registry_mirror", fields, lambda a: _matching(a, _WORD, "a registry prefix"))
    if registry_mirror and not registry_mirror.endswith("/"):
        registry_mirror += "/"  # it is a prefix of image references: host:5000/ + centos:6
    paths = {key: _env_or(key, fields, _path) or Path(os.path.normpath(doc.root / default))
             for key, default in (("output", Settings.output), ("cache", Settings.cache), ("work", Settings.work))}
    return Settings(index_url, debian_mirror, registry_mirror, paths["output"], paths["cache"], paths["work"])


def _env_or(key: str, fields: Mapping[str, _At], read: Callable[[_At], T]) -> T | None:
    """The setting's environment variable if set and not empty, else its value in the file."""
    variable = _ENV.get(key)
    value = os.environ.get(variable, "").strip() if variable else ""
    if value:
        # Relative paths from the environment are relative to where builder runs.
        return read(_At(yaml.ScalarNode(_TAG + "str", value), "", _Doc(f"environment {variable}", Path.cwd())))
    return read(fields[key]) if key in fields else None


# -- platforms --------------------------------------------------------------------------------


def _platforms(at: _At) -> tuple[Platform, ...]:
    platforms = _list(at, _platform, key=lambda p: p.name)
    if not platforms:
        at.fail("at least one platform is needed")
    return platforms


def _platform(at: _At) -> Platform:
    fields = _mapping(at, _PLATFORM_KEYS, required=("name", "family", "python"))
    name = _matching(fields["name"], _PLATFORM_NAME, "a platform name", "use [a-z0-9][a-z0-9._-]*")
    backend = cast(BackendName, _choice(fields["backend"], BACKENDS) if "backend" in fields else "docker")
    python = _text(fields["python"])
    if not PurePosixPath(python).is_absolute():
        fields["python"].fail(f"{python!r} is not an absolute path", "e.g. /usr/bin/python2.7")
    return Platform(
        name=name,
        backend=backend,
        family=cast(Family, _choice(fields["family"], FAMILIES)),
        python=python,
        base=_base(at, fields, backend),
        image_dir=_path(fields["image"]) if "image" in fields else at.doc.root / "images" / name,
        tools=_pins(fields["tools"]) if "tools" in fields else (),
        context=_pins(fields["context"]) if "context" in fields else (),
        enabled=_bool(fields["enabled"]) if "enabled" in fields else True,
        limits=_limits(fields["limits"]) if "limits" in fields else Limits(),
        machines=_machines(at, fields, backend),
        location=at.location,
    )


def _base(at: _At, fields: Mapping[str, _At], backend: BackendName) -> Base | None:
    if backend != "docker":
        if "base" in fields:
            fields["base"].fail(f"base is for docker platforms, not {backend}")
        return None
    if "base" not in fields:
        at.fail("a docker platform needs base: {debootstrap: SUITE} or {image: REF}")
    kinds = _mapping(fields["base"], ("debootstrap", "image"))
    if len(kinds) != 1:
        fields["base"].fail("give exactly one of debootstrap: SUITE or image: REF")
    (kind, value), = kinds.items()
    what = "a suite" if kind == "debootstrap" else "an image reference"
    return Base(cast(Literal["debootstrap", "image"], kind), _matching(value, _WORD, what))


def _machines(at: _At, fields: Mapping[str, _At], backend: BackendName) -> tuple[str, str] | None:
    if backend != "vagrant":
        if "machines" in fields:
            fields["machines"].fail(f"machines are for vagrant platforms, not {backend}")
        return None
    if "machines" not in fields:
        at.fail("a vagrant platform needs machines: [BUILD-MACHINE, RUNTIME-MACHINE]")
    names = _list(fields["machines"], lambda a: _matching(a, _WORD, "a machine name"))
    if len(names) != 2 or names[0] == names[1]:
        fields["machines"].fail("give two different machines: [BUILD-MACHINE, RUNTIME-MACHINE]")
    return names[0], names[1]


def _limits(at: _At) -> Limits:
    fields = _mapping(at, ("memory", "pids", "timeout", "output"))
    limits = Limits()
    for key in ("memory", "output"):
        if key in fields:
            amount = _text(fields[key]).lower()
            digits = amount.rstrip("kmg")
            if not _MEMORY.fullmatch(amount) or not digits.strip("0") or len(digits) > 15:
                what = "an amount of memory" if key == "memory" else "a size"
                fields[key].fail(f"{amount!r} is not {what}", "e.g. 512m or 2g")
            limits = replace(limits, **{key: amount})
    if "pids" in fields:
        limits = replace(limits, pids=_int(fields["pids"]))
    if "timeout" in fields:
        limits = replace(limits, timeout=_int(fields["timeout"]))
    return limits


# -- pins and build specs ---------------------------------------------------------------------


def _pins(at: _At) -> tuple[Pin, ...]:
    return _list(at, _pin, key=lambda p: canonicalize_name(p.name))


def _pin(at: _At) -> Pin:
    fields = _mapping(at, _PIN_KEYS, required=("name", "version", "sha256"))
    return _source(fields, _project_name(fields["name"]), None)


def _project_name(at: _At) -> str:
    return _matching(at, _PROJECT_NAME, "a project name")


def _source(fields: Mapping[str, _At], name: str, base: Pin | None) -> Pin:
    """The pin `fields` give; in an override, the keys given replace those of `base`."""
    if "url" in fields and "path" in fields:
        fields["path"].fail("give url or path, not both")
    pin = base or Pin(name, "", "")  # without a base, version and sha256 are required keys
    if "version" in fields:
        pin = replace(pin, version=_matching(fields["version"], _VERSION, "a version"))
        if base is not None and pin.version != base.version and "sha256" not in fields:
            fields["version"].fail(
                "an override that changes version must give its sha256", f"add the sha256 of {name} {pin.version}"
            )
    if "sha256" in fields:
        pin = replace(pin, sha256=_sha256(fields["sha256"]))
    if "url" in fields or "path" in fields:
        url = _url(fields["url"]) if "url" in fields else None
        pin = replace(pin, url=url, path=str(_path(fields["path"])) if "path" in fields else None)
    return pin


def _sha256(at: _At) -> str:
    value = _text(at).lower()
    if not _SHA256.fullmatch(value):
        at.fail("sha256 must be 64 hex digits", f"got {len(value)} characters; `sha256sum FILE` prints the digest")
    return value


def _spec(fields: Mapping[str, _At], name: str, base: BuildSpec | None) -> BuildSpec:
    readers: dict[str, Callable[[_At], object]] = {
        "build_requires": _pins,
        "setup_args": lambda a: _list(a, _text),
        "env": _env,
        "extensions": _modules,
        "skip_imports": _modules,
        "test": _text,
    }
    changes: dict[str, Any] = {key: read(fields[key]) for key, read in readers.items() if key in fields}
    source = _source(fields, name, base.source if base else None)
    return replace(base, source=source, **changes) if base else BuildSpec(source, **changes)


def _env(at: _At) -> dict[str, str]:
    env: dict[str, str] = {}
    for key, value in _pairs(at):
        name = _matching(key, _ENV_NAME, "an environment variable name")
        is_bool = isinstance(value.node, yaml.ScalarNode) and value.node.tag == _TAG + "bool"
        env[name] = str(value.node.value) if is_bool else _text(value, empty=True)
    return env


def _modules(at: _At) -> tuple[str, ...]:
    return _list(at, lambda a: _matching(a, _DOTTED, "a dotted module name", "e.g. yaml._yaml"), key=str)


# -- packages ---------------------------------------------------------------------------------


def _packages(at: _At, platforms: Sequence[Platform]) -> tuple[Package, ...]:
    items = _items(at)
    if not items:
        at.fail("at least one package is needed")
    parsed = [_package(item, platforms) for item in items]
    by_name: dict[str, tuple[Package, _At]] = {}
    for (package, _), item in zip(parsed, items):
        first = by_name.setdefault(canonicalize_name(package.name), (package, item))
        if first[1] is not item:
            item.fail(
                f"duplicate package: {first[0].name!r} (line {first[1].line}) and {package.name!r} "
                f"(line {item.line}) are the same package",
                "names are compared after PEP 503 normalisation: keep one of them",
            )
    packages = tuple(replace(p, depends=_depends(p, deps, by_name, platforms)) for p, deps in parsed)
    _check_cycles(packages, items)
    return packages


def _package(at: _At, platforms: Sequence[Platform]) -> tuple[Package, list[_At]]:
    """The package, and its `depends` entries: they are checked once every package is known."""
    fields = _mapping(at, _PACKAGE_KEYS, required=("name", "version", "sha256"))
    name = _project_name(fields["name"])
    spec = _spec(fields, name, None)
    only = _package_platforms(fields["platforms"], platforms) if "platforms" in fields else None
    package = Package(
        name=name,
        formats=_formats(fields["formats"]) if "formats" in fields else FORMATS,
        spec=spec,
        overrides=_overrides(fields["overrides"], name, spec, only, platforms) if "overrides" in fields else {},
        system=_system(fields["system"]) if "system" in fields else {},
        platforms=only,
        location=at.location,
    )
    return package, _items(fields["depends"]) if "depends" in fields else []


def _formats(at: _At) -> tuple[Format, ...]:
    chosen = _list(at, lambda a: _choice(a, FORMATS), key=str)
    if not chosen:
        at.fail(f"must list at least one of {', '.join(FORMATS)}")
    return tuple(f for f in FORMATS if f in chosen)


def _system(at: _At) -> dict[Family, SystemPackages]:
    return {cast(Family, family): _system_packages(value) for family, value in _mapping(at, FAMILIES).items()}


def _system_packages(at: _At) -> SystemPackages:
    fields = _mapping(at, ("build", "runtime"))

    def names(key: str) -> tuple[str, ...]:
        if key not in fields:
            return ()
        return _list(fields[key], lambda a: _matching(a, _OS_PACKAGE, "an OS package name"), key=str)

    return SystemPackages(names("build"), names("runtime"))


def _known_platform(at: _At, platforms: Sequence[Platform]) -> str:
    names = [p.name for p in platforms]
    value = _text(at)
    if value not in names:
        at.fail(f"unknown platform {value!r}", _did_you_mean(value, names) or f"declared platforms: {', '.join(names)}")
    return value


def _package_platforms(at: _At, platforms: Sequence[Platform]) -> tuple[str, ...]:
    only = _list(at, lambda a: _known_platform(a, platforms), key=str)
    if not only:
        at.fail("lists no platform", "leave platforms: out to build on every platform")
    return only


def _overrides(
    at: _At, name: str, spec: BuildSpec, only: tuple[str, ...] | None, platforms: Sequence[Platform]
) -> dict[str, BuildSpec]:
    overrides: dict[str, BuildSpec] = {}
    for key, value in _pairs(at):
        platform = _known_platform(key, platforms)
        if only is not None and platform not in only:
            key.fail(
                f"{name} is not built on {platform} (see its platforms:)",
                f"add {platform} to its platforms: or remove this override",
            )
        overrides[platform] = _spec(_mapping(value, _OVERRIDE_KEYS), name, spec)
    return overrides


def _depends(
    package: Package, deps: list[_At], by_name: Mapping[str, tuple[Package, _At]], platforms: Sequence[Platform]
) -> tuple[str, ...]:
    mine = package.platforms or tuple(p.name for p in platforms)
    found: list[str] = []
    for dep in deps:
        wanted = _text(dep)
        key = canonicalize_name(wanted)
        if key not in by_name:
            dep.fail(f"unknown package {wanted!r}", _did_you_mean(key, by_name) or "depends names packages of this matrix")
        target = by_name[key][0]
        if target is package:
            dep.fail(f"{package.name} depends on itself")
        if target.name in found:
            dep.fail(f"{wanted!r} is listed twice")
        missing = [p for p in mine if target.platforms is not None and p not in target.platforms]
        if missing:
            dep.fail(
                f"{package.name} needs {target.name}, which is not built for {', '.join(missing)}",
                f"add {', '.join(missing)} to {target.name}'s platforms:, or leave them out of {package.name}'s",
            )
        found.append(target.name)
    return tuple(found)


def _check_cycles(packages: Sequence[Package], items: Sequence[_At]) -> None:
    """Depth first, without recursion: a long chain of depends must not exhaust the stack."""
    graph = {canonicalize_name(p.name): [canonicalize_name(d) for d in p.depends] for p in packages}
    shown = {canonicalize_name(p.name): (p.name, item) for p, item in zip(packages, items)}
    done: set[str] = set()
    for start in graph:
        if start in done:
            continue
        trail, todo = [start], [iter(graph[start])]
        while todo:
            dep = next(todo[-1], None)
            if dep is None:
                done.add(trail.pop())
                todo.pop()
            elif dep in trail:
                cycle = " -> ".join(shown[n][0] for n in [*trail[trail.index(dep):], dep])
                item = shown[dep][1]
                raise ConfigError(
                    f"{item.path}.depends: dependency cycle: {cycle}",
                    location=item.location,
                    hint="a package cannot need, directly or not, itself at run time",
                )
            elif dep not in done:
                trail.append(dep)
                todo.append(iter(graph[dep]))

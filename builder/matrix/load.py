"""Read matrix.yaml into the frozen model, or raise ConfigError naming the file, the line and the key.

The YAML is composed, not constructed: every value keeps its line and its original text, so
`version: 1.10` stays "1.10" and each error can say `matrix.yaml:42: packages[2].sha256: ...`.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypeVar, cast
from urllib.parse import urlsplit

import yaml
from packaging.utils import canonicalize_name

from ..errors import ConfigError
from . import _yaml as y
from . import deploy
from .model import (
    BACKENDS,
    FAMILIES,
    FORMATS,
    BackendName,
    Base,
    BuildSpec,
    Engine,
    Family,
    Format,
    Interpreter,
    Limits,
    Matrix,
    Package,
    Pin,
    Platform,
    Settings,
    SystemPackages,
)

T = TypeVar("T")

# Scalars read as text: a version may be written 1.10 (a float) or a date-like 2024-01-02.
_PLATFORM_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
_PROJECT_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
# Not PEP 440: old sdists predate it, and the version is only compared with file names.
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_SETTING_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# OS package lists reach the Dockerfile as one space-separated build argument.
_OS_PACKAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_:~=@/-]*")
_MEMORY = re.compile(r"[0-9]+[kmg]?")
# deploy: targets are read by builder.deploy.targets, with the helpers below.
_TOP_KEYS = ("settings", "platforms", "packages", "deploy")
_SETTINGS_KEYS = ("index_url", "debian_mirror", "registry_mirror", "output", "cache", "work", "signing_key")
_PLATFORM_KEYS = (
    "name", "backend", "family", "python", "base", "image", "machines", "enabled", "tools", "context", "limits", "interpreter",
    "docker_host", "docker_tls", "docker_context",
)
_INTERPRETER_KEYS = ("package", "release", "prefix", "sources", "configure", "modules")
_INTERPRETER_SOURCES = ("Python", "OpenSSL")
# What the package's test imports when `modules:` is not given.
_INTERPRETER_MODULES = ("zlib", "bz2", "sqlite3", "ctypes", "readline", "ssl", "hashlib")
# Debian's rule for package names, which rpm and pkg accept too; a release has no "-".
_OS_PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_RELEASE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+~]*")
_PIN_KEYS = ("name", "version", "sha256", "url", "path")
_OVERRIDE_KEYS = (
    "version", "sha256", "url", "path", "build_requires", "setup_args", "config_settings", "env", "extensions", "skip_imports", "test",
)
_PACKAGE_KEYS = ("name", *_OVERRIDE_KEYS, "formats", "system", "depends", "platforms", "overrides")
_ENV = {"index_url": "BUILDER_INDEX_URL", "debian_mirror": "BUILDER_DEBIAN_MIRROR",
        "registry_mirror": "BUILDER_REGISTRY_MIRROR", "cache": "BUILDER_CACHE",
        "signing_key": "BUILDER_SIGNING_KEY"}


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
        raise ConfigError("the file is not UTF-8 text", location=f"{path}:{line}", hint="save it as UTF-8") from None
    return loads(text, path, label=str(path))


def loads(text: str, path: Path, label: str | None = None) -> Matrix:
    """The matrix in `text`, read from `path`. Messages name the file by `label`: load() gives
    the path as the user gave it (`cases/x.yaml`, not `x.yaml`); by default, its name."""
    path = Path(os.path.abspath(path))
    doc = y.Doc(label or path.name, path.parent)
    top = y.At(y.compose(text, doc), "", doc)
    if not isinstance(top.node, yaml.MappingNode):
        top.fail(f"expected a mapping with platforms: and packages:, got {y.kind(top.node)}")
    fields = y.mapping(top, _TOP_KEYS, required=("platforms", "packages"))
    settings = _settings(fields.get("settings"), doc)
    platforms = _platforms(fields["platforms"])
    packages = _packages(fields["packages"], platforms)
    targets = deploy.targets(fields["deploy"], platforms) if "deploy" in fields else ()
    return Matrix(path, settings, platforms, packages, targets, label=doc.label)


# -- settings ---------------------------------------------------------------------------------


def _settings(at: y.At | None, doc: y.Doc) -> Settings:
    # `settings:` with every key commented out is null: the defaults.
    empty = at is None or isinstance(at.node, yaml.ScalarNode) and at.node.tag == y.TAG + "null"
    fields = {} if at is None or empty else y.mapping(at, _SETTINGS_KEYS)
    index_url = _env_or("index_url", fields, y.url)
    debian_mirror = _env_or("debian_mirror", fields, y.url)
    registry_mirror = _env_or("registry_mirror", fields, lambda a: y.matching(a, y.WORD, "a registry prefix"))
    if registry_mirror and not registry_mirror.endswith("/"):
        registry_mirror += "/"  # it is a prefix of image references: host:5000/ + centos:6
    paths = {key: _env_or(key, fields, y.path) or Path(os.path.normpath(doc.root / default))
             for key, default in (("output", Settings.output), ("cache", Settings.cache), ("work", Settings.work))}
    signing_key = _env_or("signing_key", fields, y.path)
    if os.environ.get(_ENV["signing_key"], "").strip():
        key_from = f"environment {_ENV['signing_key']}"
    else:
        key_from = f"{fields['signing_key'].location}: settings.signing_key" if "signing_key" in fields else ""
    return Settings(index_url, debian_mirror, registry_mirror, paths["output"], paths["cache"], paths["work"],
                    signing_key, key_from)


def _env_or(key: str, fields: Mapping[str, y.At], read: Callable[[y.At], T]) -> T | None:
    """The setting's environment variable if set and not empty, else its value in the file."""
    variable = _ENV.get(key)
    value = os.environ.get(variable, "").strip() if variable else ""
    if value:
        # Relative paths from the environment are relative to where builder runs.
        return read(y.At(yaml.ScalarNode(y.TAG + "str", value), "", y.Doc(f"environment {variable}", Path.cwd())))
    return read(fields[key]) if key in fields else None


# -- platforms --------------------------------------------------------------------------------


def _platforms(at: y.At) -> tuple[Platform, ...]:
    platforms = y.listed(at, _platform, key=lambda p: p.name)
    if not platforms:
        at.fail("at least one platform is needed")
    return platforms


def _platform(at: y.At) -> Platform:
    fields = y.mapping(at, _PLATFORM_KEYS, required=("name", "family", "python"))
    name = y.matching(fields["name"], _PLATFORM_NAME, "a platform name", "use [a-z0-9][a-z0-9._-]*")
    backend = cast(BackendName, y.choice(fields["backend"], BACKENDS) if "backend" in fields else "docker")
    python = y.text(fields["python"])
    if not PurePosixPath(python).is_absolute():
        fields["python"].fail(f"{python!r} is not an absolute path", "e.g. /usr/bin/python2.7")
    interpreter = _interpreter(fields["interpreter"], backend, fields["python"]) if "interpreter" in fields else None
    return Platform(
        name=name,
        backend=backend,
        family=cast(Family, y.choice(fields["family"], FAMILIES)),
        python=python,
        base=_base(at, fields, backend),
        image_dir=y.path(fields["image"]) if "image" in fields else at.doc.root / "images" / name,
        tools=_pins(fields["tools"]) if "tools" in fields else (),
        context=_pins(fields["context"]) if "context" in fields else (),
        enabled=y.boolean(fields["enabled"]) if "enabled" in fields else True,
        limits=_limits(fields["limits"]) if "limits" in fields else Limits(),
        machines=_machines(at, fields, backend),
        location=at.location,
        interpreter=interpreter,
        engine=_engine(fields, backend),
    )


def _interpreter(at: y.At, backend: BackendName, python_at: y.At) -> Interpreter:
    """`interpreter:`: the platform's Python, built by builder from pinned sources into an OS package."""
    if backend != "docker":
        at.fail(f"interpreter is built on docker platforms only, not {backend}",
                "provision the machines' Python in the Vagrantfile, or make the platform a docker one")
    fields = y.mapping(at, _INTERPRETER_KEYS, required=("package", "sources"))
    package = y.matching(fields["package"], _OS_PACKAGE_NAME, "an OS package name", "e.g. python27-local: lower case, digits, + . -")
    release = y.matching(fields["release"], _RELEASE, "a package release", "e.g. 1 (no '-')") if "release" in fields else "1"
    prefix = y.text(fields["prefix"]) if "prefix" in fields else "/usr/local"
    where = fields.get("prefix", at)
    if not PurePosixPath(prefix).is_absolute() or os.path.normpath(prefix) != prefix:
        where.fail(f"{prefix!r} is not a normal absolute path", "e.g. /usr/local or /opt/python27")
    if prefix in ("/", "/usr"):
        where.fail(f"{prefix} holds the system's own files and Python", "install beside them: /usr/local or /opt/NAME")
    pins = _pins(fields["sources"])
    names = {p.name: p for p in pins}
    for pin, item in zip(pins, y.items(fields["sources"]), strict=True):
        if pin.name not in _INTERPRETER_SOURCES:
            item.fail(f"unknown source {pin.name!r}", f"the sources are {' and '.join(_INTERPRETER_SOURCES)}")
        if pin.url is None and pin.path is None:
            item.fail(f"{pin.name} {pin.version} needs url: or path: (it is not on the package index)",
                      "e.g. the orig tarball in Debian's archive, under debian/pool/main/")
    if "Python" not in names:
        fields["sources"].fail("no Python source", "add {name: Python, version: 2.7.18, url: ..., sha256: ...}")
    python = names["Python"]
    short = ".".join(python.version.split(".")[:2])
    expected = f"{prefix}/bin/python{short}"
    if y.text(python_at) != expected:
        python_at.fail(f"the interpreter built into {prefix} is {expected}, not {y.text(python_at)}", f"set python: {expected}")
    configure = y.listed(fields["configure"], _configure_flag) if "configure" in fields else ()
    modules = _modules(fields["modules"]) if "modules" in fields else _INTERPRETER_MODULES
    return Interpreter(package, release, prefix, python, names.get("OpenSSL"), configure, modules, at.location)


def _configure_flag(at: y.At) -> str:
    flag = y.matching(at, y.WORD, "a configure flag")
    if not flag.startswith("--"):
        at.fail(f"{flag!r} is not a configure flag", "e.g. --enable-unicode=ucs4")
    if flag.split("=")[0] in ("--prefix", "--exec-prefix"):
        at.fail(f"{flag} is set by builder from prefix:", "set interpreter.prefix instead")
    return flag


def _base(at: y.At, fields: Mapping[str, y.At], backend: BackendName) -> Base | None:
    if backend != "docker":
        if "base" in fields:
            fields["base"].fail(f"base is for docker platforms, not {backend}")
        return None
    if "base" not in fields:
        at.fail("a docker platform needs base: {debootstrap: SUITE} or {image: REF}")
    kinds = y.mapping(fields["base"], ("debootstrap", "image"))
    if len(kinds) != 1:
        fields["base"].fail("give exactly one of debootstrap: SUITE or image: REF")
    (kind, value), = kinds.items()
    what = "a suite" if kind == "debootstrap" else "an image reference"
    return Base(cast(Literal["debootstrap", "image"], kind), y.matching(value, y.WORD, what))


_DOCKER_HOST_HINT = ("give unix:///PATH/docker.sock, ssh://USER@HOST (the OpenSSH client connects), or "
                     "tcp://HOST:2376 with docker_tls: a folder of ca.pem, cert.pem and key.pem")
_CONTEXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def _engine(fields: Mapping[str, y.At], backend: BackendName) -> Engine:
    """`docker_host:` (with `docker_tls:` for tcp) or `docker_context:`: the engine the
    platform's images are made on and its guests run on."""
    given = [k for k in ("docker_host", "docker_tls", "docker_context") if k in fields]
    if not given:
        return Engine()
    if backend != "docker":
        fields[given[0]].fail(f"{given[0]} is for docker platforms, not {backend}",
                              "a vagrant platform's machines run where Vagrant runs: leave it out")
    if "docker_host" in fields and "docker_context" in fields:
        fields["docker_context"].fail("give docker_host or docker_context, not both",
                                      "a docker context already names its engine's address")
    if "docker_context" in fields:
        at = fields["docker_context"]
        if "docker_tls" in fields:
            fields["docker_tls"].fail("docker_tls goes with a tcp:// docker_host", "a docker context carries its own TLS files")
        name = y.matching(at, _CONTEXT_NAME, "a docker context name", "one `docker context ls` lists, e.g. buildbox")
        return Engine(context=name, location=f"{at.location}: {at.path}")
    at = fields["docker_host"]
    host = y.matching(at, y.WORD, "a Docker engine address", _DOCKER_HOST_HINT)
    parts = urlsplit(host)
    try:
        port = parts.port
    except ValueError:
        at.fail(f"{host!r} has no valid port", _DOCKER_HOST_HINT)
    if parts.scheme == "unix":
        if parts.netloc or not parts.path.startswith("/") or parts.path == "/":
            at.fail(f"{host!r} does not name a socket by its absolute path", "e.g. unix:///run/docker-2/docker.sock")
    elif parts.scheme == "ssh":
        if not parts.hostname or parts.path not in ("", "/") or parts.password:
            at.fail(f"{host!r} is not ssh://[USER@]HOST[:PORT]",
                    "e.g. ssh://builder@buildbox; the key and known_hosts come from your ssh set-up")
    elif parts.scheme == "tcp":
        if not parts.hostname or port is None or parts.path not in ("", "/") or parts.username:
            at.fail(f"{host!r} is not tcp://HOST:PORT", "e.g. tcp://buildbox:2376")
        if "docker_tls" not in fields:
            at.fail(f"{host} needs docker_tls: the engine is root on its machine, so builder talks to it over TLS only",
                    "set docker_tls: to a folder holding the client's ca.pem, cert.pem and key.pem "
                    "(the engine's --tlsverify set-up), or reach it through ssh://")
    else:
        at.fail(f"{host!r} is not a Docker engine address builder reaches", _DOCKER_HOST_HINT)
    if "docker_tls" in fields and parts.scheme != "tcp":
        fields["docker_tls"].fail(f"docker_tls goes with a tcp:// docker_host, not {parts.scheme}://",
                                  "leave it out: a unix socket or ssh needs no TLS files")
    tls = y.path(fields["docker_tls"]) if "docker_tls" in fields else None
    return Engine(host=host, tls=tls, location=f"{at.location}: {at.path}")


def _machines(at: y.At, fields: Mapping[str, y.At], backend: BackendName) -> tuple[str, str] | None:
    if backend != "vagrant":
        if "machines" in fields:
            fields["machines"].fail(f"machines are for vagrant platforms, not {backend}")
        return None
    if "machines" not in fields:
        at.fail("a vagrant platform needs machines: [BUILD-MACHINE, RUNTIME-MACHINE]")
    names = y.listed(fields["machines"], lambda a: y.matching(a, y.WORD, "a machine name"))
    if len(names) != 2 or names[0] == names[1]:
        fields["machines"].fail("give two different machines: [BUILD-MACHINE, RUNTIME-MACHINE]")
    return names[0], names[1]


def _limits(at: y.At) -> Limits:
    fields = y.mapping(at, ("memory", "pids", "timeout", "output"))
    limits = Limits()
    for key in ("memory", "output"):
        if key in fields:
            amount = y.text(fields[key]).lower()
            digits = amount.rstrip("kmg")
            if not _MEMORY.fullmatch(amount) or not digits.strip("0") or len(digits) > 15:
                what = "an amount of memory" if key == "memory" else "a size"
                fields[key].fail(f"{amount!r} is not {what}", "e.g. 512m or 2g")
            limits = replace(limits, memory=amount) if key == "memory" else replace(limits, output=amount)
    if "pids" in fields:
        limits = replace(limits, pids=y.integer(fields["pids"]))
    if "timeout" in fields:
        limits = replace(limits, timeout=y.integer(fields["timeout"]))
    return limits


# -- pins and build specs ---------------------------------------------------------------------


def _pins(at: y.At) -> tuple[Pin, ...]:
    return y.listed(at, _pin, key=lambda p: canonicalize_name(p.name))


def _pin(at: y.At) -> Pin:
    fields = y.mapping(at, _PIN_KEYS, required=("name", "version", "sha256"))
    return _source(fields, _project_name(fields["name"]), None)


def _project_name(at: y.At) -> str:
    return y.matching(at, _PROJECT_NAME, "a project name")


def _source(fields: Mapping[str, y.At], name: str, base: Pin | None) -> Pin:
    """The pin `fields` give; in an override, the keys given replace those of `base`."""
    if "url" in fields and "path" in fields:
        fields["path"].fail("give url or path, not both")
    pin = base or Pin(name, "", "")  # without a base, version and sha256 are required keys
    if "version" in fields:
        pin = replace(pin, version=y.matching(fields["version"], _VERSION, "a version"))
        if base is not None and pin.version != base.version and "sha256" not in fields:
            fields["version"].fail(
                "an override that changes version must give its sha256", f"add the sha256 of {name} {pin.version}"
            )
    if "sha256" in fields:
        pin = replace(pin, sha256=_sha256(fields["sha256"]))
    if "url" in fields or "path" in fields:
        url = y.url(fields["url"]) if "url" in fields else None
        pin = replace(pin, url=url, path=str(y.path(fields["path"])) if "path" in fields else None)
    return pin


def _sha256(at: y.At) -> str:
    value = y.text(at).lower()
    if not _SHA256.fullmatch(value):
        at.fail("sha256 must be 64 hex digits", f"got {len(value)} characters; `sha256sum FILE` prints the digest")
    return value


def _spec(fields: Mapping[str, y.At], name: str, base: BuildSpec | None) -> BuildSpec:
    readers: dict[str, Callable[[y.At], object]] = {
        "build_requires": _pins,
        "setup_args": lambda a: y.listed(a, y.text),
        "config_settings": _config_settings,
        "env": _env,
        "extensions": _modules,
        "skip_imports": _modules,
        "test": y.text,
    }
    changes: dict[str, Any] = {key: read(fields[key]) for key, read in readers.items() if key in fields}
    source = _source(fields, name, base.source if base else None)
    return replace(base, source=source, **changes) if base else BuildSpec(source, **changes)


def _config_settings(at: y.At) -> tuple[tuple[str, str], ...]:
    settings: list[tuple[str, str]] = []
    for key, value in y.pairs(at):
        name = y.matching(key, _SETTING_NAME, "a config setting name", "e.g. setup-args or cmake.define.BUILD_X")
        if isinstance(value.node, yaml.SequenceNode):
            settings += [(name, y.text(item, empty=True)) for item in y.items(value)]
        else:
            settings.append((name, y.text(value, empty=True)))
    return tuple(settings)


def _env(at: y.At) -> dict[str, str]:
    env: dict[str, str] = {}
    for key, value in y.pairs(at):
        name = y.matching(key, _ENV_NAME, "an environment variable name")
        is_bool = isinstance(value.node, yaml.ScalarNode) and value.node.tag == y.TAG + "bool"
        env[name] = str(value.node.value) if is_bool else y.text(value, empty=True)
    return env


def _modules(at: y.At) -> tuple[str, ...]:
    return y.listed(at, lambda a: y.matching(a, _DOTTED, "a dotted module name", "e.g. yaml._yaml"), key=str)


# -- packages ---------------------------------------------------------------------------------


def _packages(at: y.At, platforms: Sequence[Platform]) -> tuple[Package, ...]:
    items = y.items(at)
    if not items:
        at.fail("at least one package is needed")
    parsed = [_package(item, platforms) for item in items]
    by_name: dict[str, tuple[Package, y.At]] = {}
    for (package, _), item in zip(parsed, items, strict=True):
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


def _package(at: y.At, platforms: Sequence[Platform]) -> tuple[Package, list[y.At]]:
    """The package, and its `depends` entries: they are checked once every package is known."""
    fields = y.mapping(at, _PACKAGE_KEYS, required=("name", "version", "sha256"))
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
        platform_system=_platform_system(fields["overrides"], platforms) if "overrides" in fields else {},
    )
    return package, y.items(fields["depends"]) if "depends" in fields else []


def _formats(at: y.At) -> tuple[Format, ...]:
    chosen = y.listed(at, lambda a: y.choice(a, FORMATS), key=str)
    if not chosen:
        at.fail(f"must list at least one of {', '.join(FORMATS)}")
    return tuple(f for f in FORMATS if f in chosen)


def _system(at: y.At) -> dict[Family, SystemPackages]:
    return {cast(Family, family): _system_packages(value) for family, value in y.mapping(at, FAMILIES).items()}


def _system_packages(at: y.At) -> SystemPackages:
    fields = y.mapping(at, ("build", "runtime"))

    def names(key: str) -> tuple[str, ...]:
        if key not in fields:
            return ()
        return y.listed(fields[key], lambda a: y.matching(a, _OS_PACKAGE, "an OS package name"), key=str)

    return SystemPackages(names("build"), names("runtime"))


def _known_platform(at: y.At, platforms: Sequence[Platform]) -> str:
    return y.known(at, [p.name for p in platforms], "platform")


def _package_platforms(at: y.At, platforms: Sequence[Platform]) -> tuple[str, ...]:
    only = y.listed(at, lambda a: _known_platform(a, platforms), key=str)
    if not only:
        at.fail("lists no platform", "leave platforms: out to build on every platform")
    return only


def _overrides(
    at: y.At, name: str, spec: BuildSpec, only: tuple[str, ...] | None, platforms: Sequence[Platform]
) -> dict[str, BuildSpec]:
    overrides: dict[str, BuildSpec] = {}
    for key, value in y.pairs(at):
        platform = _known_platform(key, platforms)
        if only is not None and platform not in only:
            key.fail(
                f"{name} is not built on {platform} (see its platforms:)",
                f"add {platform} to its platforms: or remove this override",
            )
        given = {k: v for k, v in y.mapping(value, (*_OVERRIDE_KEYS, "system")).items() if k != "system"}
        overrides[platform] = _spec(given, name, spec)
    return overrides


def _platform_system(at: y.At, platforms: Sequence[Platform]) -> dict[str, SystemPackages]:
    """overrides.<platform>.system: {FAMILY: {build, runtime}}, the platform's own family only."""
    family = {p.name: p.family for p in platforms}
    found: dict[str, SystemPackages] = {}
    for key, value in y.pairs(at):
        fields = y.mapping(value, (*_OVERRIDE_KEYS, "system"))
        if "system" not in fields:
            continue
        name = y.text(key)
        lists = y.mapping(fields["system"], FAMILIES)
        for other, node in lists.items():
            if other != family[name]:
                node.fail(f"{name} is a {family[name]} platform: its system lists are under {family[name]}:",
                          f"write system: {{{family[name]}: {{build: [...], runtime: [...]}}}}")
        if family[name] in lists:
            found[name] = _system_packages(lists[family[name]])
    return found


def _depends(
    package: Package, deps: list[y.At], by_name: Mapping[str, tuple[Package, y.At]], platforms: Sequence[Platform]
) -> tuple[str, ...]:
    mine = package.platforms or tuple(p.name for p in platforms)
    found: list[str] = []
    for dep in deps:
        wanted = y.text(dep)
        key = canonicalize_name(wanted)
        if key not in by_name:
            dep.fail(f"unknown package {wanted!r}", y.did_you_mean(key, by_name) or "depends names packages of this matrix")
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


def _check_cycles(packages: Sequence[Package], items: Sequence[y.At]) -> None:
    """Depth first, without recursion: a long chain of depends must not exhaust the stack."""
    graph = {canonicalize_name(p.name): [canonicalize_name(d) for d in p.depends] for p in packages}
    shown = {canonicalize_name(p.name): (p.name, item) for p, item in zip(packages, items, strict=True)}
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

"""The `deploy:` part of matrix.yaml: deploy targets, validated like the rest of the file
(file:line errors, "did you mean") with builder.config's own readers."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Literal, cast

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from .. import config as c
from ..errors import ConfigError
from ..model import FORMATS, Format, Matrix
from ..ssh import Destination

HookName = Literal["out", "stop", "start", "smoke", "in"]
# In the order a host goes through them: out of the balancer, stop, (switch), start, smoke test, back in.
HOOKS: tuple[HookName, ...] = ("out", "stop", "start", "smoke", "in")
_TARGET_KEYS = ("name", "platform", "hosts", "ssh", "root", "python", "app", "requirements", "format", "hooks",
                "batch", "keep")
_SSH_KEYS = ("identity", "options")
_BATCH = re.compile(r"([1-9][0-9]*)(%?)")
_TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Hook:
    command: str  # {host}, {hostname}, {port}, {release}, {root} are substituted
    where: Literal["local", "remote"]


@dataclass(frozen=True)
class Batch:
    size: int
    percent: bool = False

    def split(self, hosts: tuple[Destination, ...]) -> list[tuple[Destination, ...]]:
        """`1`: one host at a time; `50%`: half of the pool at a time (at least one)."""
        per = max(1, len(hosts) * self.size // 100) if self.percent else self.size
        return [hosts[i:i + per] for i in range(0, len(hosts), per)]

    def __str__(self) -> str:
        return f"{self.size}%" if self.percent else str(self.size)


@dataclass(frozen=True)
class Target:
    name: str
    platform: str
    hosts: tuple[Destination, ...]
    root: str  # on each host, e.g. /srv/myapp
    python: str  # on each host
    app: Path  # the application's source tree, or its sdist
    requirements: tuple[str, ...]
    format: Format = "egg"
    hooks: Mapping[HookName, Hook] = field(default_factory=dict)
    batch: Batch = Batch(1)
    keep: int = 5
    location: str = ""


def load(matrix: Matrix) -> tuple[Target, ...]:
    """The matrix file's deploy targets (none if it has no deploy: key)."""
    text = matrix.path.read_text(encoding="utf-8-sig")
    doc = c._Doc(matrix.path.name, matrix.root)
    top = c._At(c._compose(text, doc), "", doc)
    fields = c._mapping(top, c._TOP_KEYS)
    if "deploy" not in fields:
        return ()
    return c._list(fields["deploy"], lambda at: _target(at, matrix), key=lambda t: t.name)


def find(matrix: Matrix, name: str) -> Target:
    targets = load(matrix)
    for target in targets:
        if target.name == name:
            return target
    names = [t.name for t in targets]
    if not names:
        raise ConfigError(f"{matrix.path.name} declares no deploy targets",
                          hint="add a deploy: list beside platforms: and packages: (see README.md, Deploy)")
    raise ConfigError(f"unknown deploy target {name!r}",
                      hint=c._did_you_mean(name, names) or f"declared targets: {', '.join(names)}")


def _target(at: c._At, matrix: Matrix) -> Target:
    fields = c._mapping(at, _TARGET_KEYS, required=("name", "platform", "hosts", "root", "app", "requirements"))
    name = c._matching(fields["name"], _TARGET_NAME, "a target name")
    platform = c._known_platform(fields["platform"], matrix.platforms)
    identity, options = _ssh(fields["ssh"]) if "ssh" in fields else (None, ())
    hosts = c._list(fields["hosts"], lambda a: replace(_destination(a), identity=identity, options=options), key=str)
    if not hosts:
        fields["hosts"].fail("lists no host")
    python = c._text(fields["python"]) if "python" in fields else matrix.platform(platform).python
    root = c._text(fields["root"])
    for key, value in (("root", root), ("python", python)):
        if not PurePosixPath(value).is_absolute() and key in fields:
            fields[key].fail(f"{value!r} is not an absolute path", "e.g. /srv/myapp")
    return Target(
        name=name,
        platform=platform,
        hosts=hosts,
        root=root.rstrip("/") or "/",
        python=python,
        app=c._path(fields["app"]),
        requirements=c._list(fields["requirements"], _requirement, key=lambda r: canonicalize_name(Requirement(r).name)),
        format=cast(Format, c._choice(fields["format"], FORMATS)) if "format" in fields else "egg",
        hooks=_hooks(fields["hooks"]) if "hooks" in fields else {},
        batch=_batch(fields["batch"]) if "batch" in fields else Batch(1),
        keep=c._int(fields["keep"]) if "keep" in fields else 5,
        location=at.location,
    )


def _destination(at: c._At) -> Destination:
    text = c._text(at)
    try:
        return Destination.parse(text)
    except ValueError as exc:
        at.fail(str(exc), "e.g. deploy@web1.example or deploy@10.0.0.5:2222")


def _ssh(at: c._At) -> tuple[Path | None, tuple[tuple[str, str], ...]]:
    fields = c._mapping(at, _SSH_KEYS)
    identity = c._path(fields["identity"]) if "identity" in fields else None
    options: list[tuple[str, str]] = []
    if "options" in fields:
        for key, value in c._pairs(fields["options"]):
            options.append((c._matching(key, re.compile(r"[A-Za-z]+"), "an ssh option name"), c._text(value)))
    return identity, tuple(options)


def _requirement(at: c._At) -> str:
    text = c._text(at)
    try:
        Requirement(text)
    except InvalidRequirement as exc:
        at.fail(f"{text!r} is not a requirement: {exc}", "e.g. PyYAML==5.4.1 or simplejson")
    return text


def _hooks(at: c._At) -> dict[HookName, Hook]:
    hooks: dict[HookName, Hook] = {}
    for name, value in c._mapping(at, HOOKS).items():
        where = c._mapping(value, ("local", "remote"))
        if len(where) != 1:
            value.fail("give exactly one of local: COMMAND (on this machine) or remote: COMMAND (on the host)")
        (kind, command), = where.items()
        hooks[cast(HookName, name)] = Hook(c._text(command), cast(Literal["local", "remote"], kind))
    return hooks


def _batch(at: c._At) -> Batch:
    node = at.node
    value = str(node.value) if isinstance(node, yaml.ScalarNode) else ""
    match = _BATCH.fullmatch(value)
    if not match or (match.group(2) and int(match.group(1)) > 100):
        at.fail(f"{value!r} is not a batch size", "a number of hosts (1: one at a time) or a share such as 50%")
    return Batch(int(match.group(1)), bool(match.group(2)))

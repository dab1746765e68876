"""The `deploy:` part of matrix.yaml: deploy targets, read with the same node readers as the rest
of the file (file:line errors, "did you mean")."""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Literal, cast

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ..errors import ConfigError
from . import _yaml as y
from .hosts import Destination
from .model import FORMATS, HOOKS, Batch, Format, Hook, HookName, Matrix, Platform, Target

_TARGET_KEYS = ("name", "platform", "hosts", "ssh", "root", "python", "app", "requirements", "format", "hooks",
                "batch", "keep")
_SSH_KEYS = ("identity", "options")
_BATCH = re.compile(r"([1-9][0-9]*)(%?)")
_TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def targets(at: y.At, platforms: Sequence[Platform]) -> tuple[Target, ...]:
    """The deploy targets of the file's deploy: list."""
    return y.listed(at, lambda item: _target(item, platforms), key=lambda t: t.name)


def find(matrix: Matrix, name: str) -> Target:
    for target in matrix.targets:
        if target.name == name:
            return target
    names = [t.name for t in matrix.targets]
    if not names:
        raise ConfigError(f"{matrix.label} declares no deploy targets",
                          hint="add a deploy: list beside platforms: and packages: (see README.md, Deploy)")
    raise ConfigError(f"unknown deploy target {name!r}",
                      hint=y.did_you_mean(name, names) or f"declared targets: {', '.join(names)}")


def _target(at: y.At, platforms: Sequence[Platform]) -> Target:
    fields = y.mapping(at, _TARGET_KEYS, required=("name", "platform", "hosts", "root", "app", "requirements"))
    name = y.matching(fields["name"], _TARGET_NAME, "a target name")
    platform = y.known(fields["platform"], [p.name for p in platforms], "platform")
    identity, options = _ssh(fields["ssh"]) if "ssh" in fields else (None, ())
    hosts = y.listed(fields["hosts"], lambda a: replace(_destination(a), identity=identity, options=options), key=str)
    if not hosts:
        fields["hosts"].fail("lists no host")
    python = y.text(fields["python"]) if "python" in fields else next(p.python for p in platforms if p.name == platform)
    root = y.text(fields["root"])
    for key, value in (("root", root), ("python", python)):
        if not PurePosixPath(value).is_absolute() and key in fields:
            fields[key].fail(f"{value!r} is not an absolute path", "e.g. /srv/myapp")
    return Target(
        name=name,
        platform=platform,
        hosts=hosts,
        root=root.rstrip("/") or "/",
        python=python,
        app=y.path(fields["app"]),
        requirements=y.listed(fields["requirements"], _requirement, key=lambda r: canonicalize_name(Requirement(r).name)),
        format=cast(Format, y.choice(fields["format"], FORMATS)) if "format" in fields else "egg",
        hooks=_hooks(fields["hooks"]) if "hooks" in fields else {},
        batch=_batch(fields["batch"]) if "batch" in fields else Batch(1),
        keep=y.integer(fields["keep"]) if "keep" in fields else 5,
        location=at.location,
    )


def _destination(at: y.At) -> Destination:
    text = y.text(at)
    try:
        return Destination.parse(text)
    except ValueError as exc:
        at.fail(str(exc), "e.g. deploy@web1.example or deploy@10.0.0.5:2222")


def _ssh(at: y.At) -> tuple[Path | None, tuple[tuple[str, str], ...]]:
    fields = y.mapping(at, _SSH_KEYS)
    identity = y.path(fields["identity"]) if "identity" in fields else None
    options: list[tuple[str, str]] = []
    if "options" in fields:
        for key, value in y.pairs(fields["options"]):
            options.append((y.matching(key, re.compile(r"[A-Za-z]+"), "an ssh option name"), y.text(value)))
    return identity, tuple(options)


def _requirement(at: y.At) -> str:
    text = y.text(at)
    try:
        Requirement(text)
    except InvalidRequirement as exc:
        at.fail(f"{text!r} is not a requirement: {exc}", "e.g. PyYAML==5.4.1 or simplejson")
    return text


def _hooks(at: y.At) -> dict[HookName, Hook]:
    hooks: dict[HookName, Hook] = {}
    for name, value in y.mapping(at, HOOKS).items():
        where = y.mapping(value, ("local", "remote"))
        if len(where) != 1:
            value.fail("give exactly one of local: COMMAND (on this machine) or remote: COMMAND (on the host)")
        (kind, command), = where.items()
        hooks[cast(HookName, name)] = Hook(y.text(command), cast(Literal["local", "remote"], kind))
    return hooks


def _batch(at: y.At) -> Batch:
    node = at.node
    value = str(node.value) if isinstance(node, yaml.ScalarNode) else ""
    match = _BATCH.fullmatch(value)
    if not match or (match.group(2) and int(match.group(1)) > 100):
        at.fail(f"{value!r} is not a batch size", "a number of hosts (1: one at a time) or a share such as 50%")
    return Batch(int(match.group(1)), bool(match.group(2)))

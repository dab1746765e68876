"""Reading composed YAML nodes with their line and key path: every reader raises ConfigError naming
`file:line: key.path: what is wrong`, with a hint or a "did you mean".

The matrix's own schema (load) and its deploy: part (deploy) read the file through these.
"""
from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import yaml

from ..errors import ConfigError

T = TypeVar("T")

TAG = "tag:yaml.org,2002:"
TEXT_TAGS = {TAG + t for t in ("str", "int", "float", "timestamp")}
_KINDS = {"null": "nothing", "bool": "a boolean", "int": "a number", "float": "a number", "str": "a string",
          "timestamp": "a date"}

WORD = re.compile(r"[^\s\x00]+")
MAX_INT = 2**31 - 1
URL_SCHEMES = ("http", "https", "file")
_CONSTRUCTOR = yaml.constructor.SafeConstructor()  # YAML's own reading of booleans and integers



@dataclass(frozen=True)
class Doc:
    label: str  # the file's name, for locations
    root: Path  # relative paths in the file are relative to its folder
    merged: dict[int, list[tuple[Any, Any]]] = field(default_factory=dict, compare=False)  # see _entries


@dataclass(frozen=True)
class At:
    """A YAML node and where it is: its line and its path in the document (`packages[2].sha256`)."""

    node: Any
    path: str
    doc: Doc

    @property
    def line(self) -> int:
        return int(self.node.start_mark.line) + 1

    @property
    def location(self) -> str:
        # A value from the environment has no line.
        return f"{self.doc.label}:{self.line}" if self.node.start_mark else self.doc.label

    def child(self, node: Any, step: str) -> At:
        return At(node, (self.path + step).lstrip("."), self.doc)

    def fail(self, message: str, hint: str | None = None) -> NoReturn:
        raise ConfigError(f"{self.path}: {message}" if self.path else message, location=self.location, hint=hint)


YAML_HINT = "look for an unclosed bracket or quote, or wrong indentation, on that line or just above it"


def _loader() -> type:
    """libyaml's parser (when PyYAML has it) under PyYAML's own composer: the events come from C,
    about eight times faster on a big matrix (a 5,000-cell file loads in a fraction of a second
    instead of 1-2 s), while the nodes, their line marks and a too-deep file's RecursionError
    stay those of the pure-Python composer."""
    try:
        from yaml.cyaml import CParser  # type: ignore[attr-defined]
    except ImportError:
        return yaml.SafeLoader
    from yaml.composer import Composer
    from yaml.constructor import SafeConstructor
    from yaml.resolver import Resolver

    class Loader(Composer, CParser, SafeConstructor, Resolver):
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    return Loader


LOADER = _loader()


def compose(text: str, doc: Doc) -> Any:
    try:
        node = yaml.compose(text, Loader=LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        context = f" ({exc.context} at line {exc.context_mark.line + 1})" if exc.context and exc.context_mark else ""
        problem = exc.problem or exc.context or "malformed"
        raise ConfigError(f"invalid YAML: {problem}{context}", location=f"{doc.label}:{line}", hint=YAML_HINT) from None
    except yaml.YAMLError as exc:
        position = getattr(exc, "position", 0)
        line = text[:position].count("\n") + 1 if isinstance(position, int) else 1
        raise ConfigError(f"invalid YAML: {exc}", location=f"{doc.label}:{line}", hint=YAML_HINT) from None
    except RecursionError:
        raise ConfigError("invalid YAML: nested too deeply", location=f"{doc.label}:1") from None
    if node is None:
        raise ConfigError(
            "the file is empty", location=f"{doc.label}:1", hint="declare platforms: and packages: (see README.md)"
        )
    return node


def kind(node: Any) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    tag = str(node.tag)
    return _KINDS.get(tag.removeprefix(TAG), f"a {tag} value")


def did_you_mean(word: str, options: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f"did you mean '{close[0]}'?" if close else None


def _entries(at: At, within: frozenset[int] = frozenset()) -> list[tuple[Any, Any]]:
    """The mapping's (key, value) nodes; YAML merge keys (`<<: *defaults`) give way to its own keys."""
    if id(at.node) in within:
        at.fail("a << merge refers back to itself")
    # Remembered per node: merges of merges of the same anchors must not take exponential time.
    if id(at.node) in at.doc.merged:
        return at.doc.merged[id(at.node)]
    own: dict[str, tuple[Any, Any]] = {}
    merged: list[tuple[Any, Any]] = []
    for key, value in at.node.value:
        if key.tag == TAG + "merge":
            for source in value.value if isinstance(value, yaml.SequenceNode) else [value]:
                if not isinstance(source, yaml.MappingNode):
                    at.child(key, "").fail(f"a << merge needs a mapping, got {kind(source)}")
                merged += _entries(at.child(source, ""), within | {id(at.node)})
            continue
        if not isinstance(key, yaml.ScalarNode) or key.tag not in TEXT_TAGS:
            at.child(key, "").fail(f"keys must be names, got {kind(key)}")
        if key.value in own:
            at.child(key, "").fail(f"{key.value!r} is given twice (also at line {own[key.value][0].start_mark.line + 1})")
        own[key.value] = (key, value)
    for key, value in merged:
        own.setdefault(key.value, (key, value))
    at.doc.merged[id(at.node)] = list(own.values())
    return at.doc.merged[id(at.node)]


def pairs(at: At) -> list[tuple[At, At]]:
    """A mapping's (key, value); a value's path continues the mapping's: `packages[0].env.CFLAGS`."""
    if not isinstance(at.node, yaml.MappingNode):
        at.fail(f"expected a mapping, got {kind(at.node)}")
    return [(at.child(key, ""), at.child(value, f".{key.value}")) for key, value in _entries(at)]


def mapping(at: At, keys: Collection[str], required: Sequence[str] = ()) -> dict[str, At]:
    fields: dict[str, At] = {}
    for key, value in pairs(at):
        name = str(key.node.value)
        if name not in keys:
            hint = did_you_mean(name, keys) or f"known keys: {', '.join(keys)}"
            raise ConfigError(f"{value.path}: unknown key", location=key.location, hint=hint)
        fields[name] = value
    for name in required:
        if name not in fields:
            at.fail(f"missing required key '{name}'")
    return fields


def items(at: At) -> list[At]:
    if not isinstance(at.node, yaml.SequenceNode):
        value = at.node.value if isinstance(at.node, yaml.ScalarNode) else ""
        hint = f"write it as a list: [{value}]" if value and len(value) < 60 and "\n" not in value else None
        at.fail(f"expected a list, got {kind(at.node)}", hint)
    return [at.child(node, f"[{i}]") for i, node in enumerate(at.node.value)]


def listed(at: At, read: Callable[[At], T], key: Callable[[T], str] | None = None) -> tuple[T, ...]:
    nodes = items(at)
    values = [read(item) for item in nodes]
    if key is not None:
        seen: dict[str, At] = {}
        for value, item in zip(values, nodes, strict=True):
            if key(value) in seen:
                item.fail(f"{key(value)!r} is listed twice (also at line {seen[key(value)].line})")
            seen[key(value)] = item
    return tuple(values)


def text(at: At, empty: bool = False) -> str:
    node = at.node
    if not isinstance(node, yaml.ScalarNode) or node.tag not in TEXT_TAGS:
        hint = f'quote it: "{node.value}"' if getattr(node, "tag", "") == TAG + "bool" else None
        at.fail(f"expected a string, got {kind(node)}", hint)
    if not empty and not node.value.strip():
        at.fail("must not be empty")
    return str(node.value)


def matching(at: At, pattern: re.Pattern[str], what: str, hint: str | None = None) -> str:
    value = text(at)
    if not pattern.fullmatch(value):
        at.fail(f"{value!r} is not {what}", hint)
    return value


def choice(at: At, options: Sequence[str]) -> str:
    value = text(at)
    if value not in options:
        at.fail(f"{value!r} is not one of {', '.join(options)}", did_you_mean(value, options))
    return value


def boolean(at: At) -> bool:
    if not isinstance(at.node, yaml.ScalarNode) or at.node.tag != TAG + "bool":
        at.fail(f"expected true or false, got {kind(at.node)}", "write true or false, unquoted")
    return bool(_CONSTRUCTOR.construct_yaml_bool(at.node))


def integer(at: At) -> int:
    if not isinstance(at.node, yaml.ScalarNode) or at.node.tag != TAG + "int":
        at.fail(f"expected a whole number, got {kind(at.node)}", "write digits only, unquoted: e.g. 600")
    try:
        value = int(_CONSTRUCTOR.construct_yaml_int(at.node))
    except ValueError:
        value = 0
    if not 0 < value <= MAX_INT:
        at.fail(f"must be a whole number from 1 to {MAX_INT}", "e.g. 600")
    return value


def path(at: At) -> Path:
    value = matching(at, re.compile(r"[^\x00]+"), "a path")
    # Lexical, not resolve(): no file system access, and symlinked folders keep the user's names.
    return Path(os.path.normpath(at.doc.root / Path(value).expanduser()))


def url(at: At) -> str:
    value = matching(at, WORD, "a URL")
    if urlsplit(value).scheme not in URL_SCHEMES:
        at.fail(f"{value!r} is not a URL", f"start it with {' or '.join(s + '://' for s in URL_SCHEMES)}")
    return value


def known(at: At, names: Sequence[str], what: str) -> str:
    """One of the names the file declares elsewhere (a platform, say)."""
    value = text(at)
    if value not in names:
        at.fail(f"unknown {what} {value!r}", did_you_mean(value, names) or f"declared {what}s: {', '.join(names)}")
    return value

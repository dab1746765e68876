"""Where to connect and as whom: an ssh destination as a deploy target or `vagrant ssh-config`
gives it. A plain value (no connection is made here), so the matrix can hold it."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Destination:
    """Where to connect and as whom: what an ssh destination string or `vagrant ssh-config` says."""

    host: str
    user: str | None = None
    port: int | None = None
    identity: Path | None = None
    options: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Destination:
        """`host`, `user@host`, `user@host:2222`, `ssh://user@host:2222`, `[::1]:2222`.

        Strict: a user name, then a host name, an IPv4 address or an IPv6 address in brackets,
        then a port from 1 to 65535. Nothing may start with `-` (ssh would read it as an
        option), and nothing else is accepted (no spaces, a second `@`, a second port)."""
        rest = text.strip()
        if rest.startswith("ssh://"):
            rest = rest[len("ssh://"):].rstrip("/")
        user = None
        if "@" in rest:
            user, rest = rest.split("@", 1)
            if not _USER.fullmatch(user):
                raise ValueError(_bad(text, f"{user!r} is not a user name (letters, digits, . _ -; not starting with -)"))
        port: int | None = None
        if rest.startswith("["):
            host, closed, tail = rest[1:].partition("]")
            if not closed:
                raise ValueError(_bad(text, "an IPv6 address opened with [ is never closed with ]"))
            if not _ipv6(host):
                raise ValueError(_bad(text, f"{host!r} is not an IPv6 address"))
            if tail:
                if not tail.startswith(":"):
                    raise ValueError(_bad(text, f"{tail!r} after the address is not :PORT"))
                port = _port(tail[1:], text)
        else:
            if rest.count(":") > 1:
                hint = "write an IPv6 address in brackets, e.g. [::1]:22" if _ipv6(rest) else "give one :PORT at most"
                raise ValueError(_bad(text, hint))
            host, colon, number = rest.partition(":")
            if colon:
                port = _port(number, text)
            if not _hostname(host):
                raise ValueError(_bad(text, f"{host!r} is not a host name or an IPv4 address"))
        return cls(host=host, user=user, port=port)

    @classmethod
    def from_ssh_config(cls, text: str) -> dict[str, Destination]:
        """Parse `vagrant ssh-config` (or any ssh_config of Host blocks) into destinations by Host."""
        blocks: dict[str, dict[str, str]] = {}
        current: dict[str, str] | None = None
        order: list[tuple[str, list[tuple[str, str]]]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            key, _, value = line.partition(" ")
            value = value.strip().strip('"')
            if key.lower() == "host":
                current = blocks.setdefault(value, {})
                order.append((value, []))
                continue
            if current is None:
                continue
            current[key.lower()] = value
            order[-1][1].append((key, value))
        result = {}
        known = {"hostname", "user", "port", "identityfile"}
        for name, pairs in order:
            fields = blocks[name]
            options = tuple((key, value) for key, value in pairs if key.lower() not in known)
            result[name] = cls(
                host=fields.get("hostname", name),
                user=fields.get("user"),
                port=int(fields["port"]) if fields.get("port", "").isdigit() else None,
                identity=Path(fields["identityfile"]) if "identityfile" in fields else None,
                options=options,
            )
        return result

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        where = f"{self.user}@{host}" if self.user else host
        return f"{where}:{self.port}" if self.port else where


# What ssh and sshd accept as a login name on every system here (POSIX portable names).
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
# A host name's labels: letters, digits, - and _ (ssh_config aliases have them), never - first.
_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def _bad(text: str, why: str) -> str:
    return f"not an ssh destination: {text!r}: {why} (expected host, user@host or user@host:port)"


def _hostname(host: str) -> bool:
    if not host or len(host) > 253:
        return False
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if all(label.isdigit() for label in labels):  # looks like an IPv4 address: must be one
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return False
        return True
    return all(_LABEL.fullmatch(label) for label in labels)


def _ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(_bad(whole, "the port must be a number from 1 to 65535"))
    return int(text)

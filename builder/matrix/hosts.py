"""Where to connect and as whom: an ssh destination as a deploy target or `vagrant ssh-config`
gives it. A plain value (no connection is made here), so the matrix can hold it."""
from __future__ import annotations

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
        """`host`, `user@host`, `user@host:2222`, `ssh://user@host:2222`, `[::1]:2222`."""
        rest = text.strip()
        if rest.startswith("ssh://"):
            rest = rest[len("ssh://"):].rstrip("/")
        user = None
        if "@" in rest:
            user, rest = rest.rsplit("@", 1)
        port: int | None = None
        if rest.startswith("["):
            host, _, tail = rest[1:].partition("]")
            if tail.startswith(":"):
                port = _port(tail[1:], text)
        elif rest.count(":") == 1:
            host, _, number = rest.partition(":")
            port = _port(number, text)
        else:
            host = rest
        if not host or (user is not None and not user) or any(c.isspace() for c in host):
            raise ValueError(f"not an ssh destination: {text!r} (expected host, user@host or user@host:port)")
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


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"not an ssh destination: {whole!r} (the port must be a number from 1 to 65535)")
    return int(text)

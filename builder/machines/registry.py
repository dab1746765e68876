"""The backends by name, each made once per run and handed to the stages that need one.

Only the command line imports this module: nothing below it looks a backend up. A backend's
module is imported when a platform of it is first used, so `import docker` happens only for
docker platforms.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from ..errors import EngineError, ImageError
from ..matrix.model import Platform
from .base import Backend


def _docker() -> Backend:
    from . import docker

    return docker.DockerBackend()


def _vagrant() -> Backend:
    # One per process: a platform's machines are up once per run and shared by its cells.
    from . import vagrant

    return vagrant.backend()


FACTORIES: dict[str, Callable[[], Backend]] = {"docker": _docker, "vagrant": _vagrant}


class Backends(dict[str, Backend]):
    """The run's backends: each made on first use, then the same one for every cell."""

    def __missing__(self, name: str) -> Backend:
        factory = FACTORIES.get(name)
        if factory is None:
            raise ImageError(
                f"the {name} backend is declared in matrix.yaml but not available in this version of builder",
                hint=f"leave {name} platforms disabled, or build them with the docker backend",
            )
        self[name] = made = factory()
        return made


def get(name: str) -> Backend:
    return Backends()[name]


def clean(pid: int | None = None, platforms: Sequence[Platform] = ()) -> list[str]:
    """Remove the containers of run `pid`, or of runs that are no longer alive, on the default
    engine, the engines of the docker `platforms` and every engine this process talked to.

    Machines of the vagrant backend's docker provider carry the same labels, so they are among
    them; other Vagrant machines are destroyed when their run ends, or by the next run.
    """
    from . import engine

    removed: list[str] = []
    failed: list[EngineError] = []
    addresses = dict.fromkeys([engine.DEFAULT, *(p.engine for p in platforms if p.backend == "docker" and p.enabled)])
    clients = {id(c): c for c in engine.clients()}
    for address in addresses:
        try:
            found = engine.client(address)
        except EngineError as exc:  # the others are still cleaned; this one is named
            failed.append(exc)
            continue
        clients[id(found)] = found
    for made in clients.values():
        try:
            removed += engine.remove_containers(made, pid)
        except EngineError as exc:
            failed.append(exc)
    if failed:
        raise EngineError("; ".join(exc.message for exc in failed), hint=failed[0].hint)
    return removed

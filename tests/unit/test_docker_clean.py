"""`clean` removes the guests of dead runs, and nothing that merely inherited builder's labels."""
from __future__ import annotations

import os

import docker.errors

from builder.machines import engine as backend


class Container:
    """A container as a sparse listing gives it: the list's own fields only."""

    def __init__(self, name: str, labels: dict[str, str], gone: bool = False) -> None:
        self.name, self.labels, self.removed, self.gone = name, labels, False, gone
        self.id = f"id-{name}"
        self.attrs = {"Id": self.id, "Names": [f"/{name}"], "Labels": labels}

    def remove(self, force: bool = False, v: bool = False) -> None:
        if self.gone:  # removed between the listing and our call
            raise docker.errors.NotFound(f"No such container: {self.name}")
        self.removed = True


class Engine:
    def __init__(self, containers: list[Container]) -> None:
        self.containers = self
        self._all = containers

    def list(self, all: bool = False, sparse: bool = False, filters: dict | None = None) -> list[Container]:
        return [c for c in self._all if backend.LABEL in c.labels]


def test_only_guests_of_dead_runs_are_removed() -> None:
    dead = 2**22 + 12345  # above any pid_max default: no such process
    guests = [
        Container("dead-cell", {"io.builder": "cell", "io.builder.pid": str(dead)}),
        Container("dead-vm", {"io.builder": "vagrant", "io.builder.pid": str(dead)}),
        Container("finished-cell", {"io.builder": "cell", "io.builder.pid": str(dead)}, gone=True),
        Container("live-cell", {"io.builder": "cell", "io.builder.pid": str(os.getppid())}),
        # A RUN step of `docker build` FROM a builder image: the image's labels, no pid.
        Container("build-step", {"io.builder": "image", "io.builder.platform": "centos6"}),
    ]
    removed = backend.remove_containers(Engine(guests), None)  # type: ignore[arg-type]
    assert sorted(removed) == ["dead-cell", "dead-vm"]
    assert [c.name for c in guests if c.removed] == ["dead-cell", "dead-vm"]
    mine = [Container("mine", {"io.builder": "cell", "io.builder.pid": str(os.getppid())}), guests[-1]]
    assert backend.remove_containers(Engine(mine), os.getppid()) == ["mine"]  # type: ignore[arg-type]


def test_guests_of_builders_on_other_machines_sharing_the_engine_are_left_alone() -> None:
    """An engine elsewhere (docker_host:) may hold the guests of builders on several machines:
    a pid from another machine says nothing of a process here."""
    dead = 2**22 + 12345
    guests = [
        Container("ours-dead", {"io.builder": "cell", "io.builder.pid": str(dead), "io.builder.machine": backend.MACHINE}),
        Container("theirs", {"io.builder": "cell", "io.builder.pid": str(dead), "io.builder.machine": "laptop-2"}),
        Container("theirs-same-pid", {"io.builder": "cell", "io.builder.pid": str(os.getpid()), "io.builder.machine": "laptop-2"}),
    ]
    assert backend.remove_containers(Engine(guests), None) == ["ours-dead"]  # type: ignore[arg-type]
    assert backend.remove_containers(Engine(guests), os.getpid()) == []  # type: ignore[arg-type]
    assert backend.owned() == {"io.builder.pid": str(os.getpid()), "io.builder.machine": backend.MACHINE}

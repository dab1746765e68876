"""The vagrant backend: a platform's build and runtime machines from the project's Vagrantfile.

Vagrant is driven through python-vagrant (the only module that imports it); commands and copies
go over plain ssh through builder.machines.ssh, one master connection per machine, made from
`vagrant ssh-config` (a `vagrant ssh` per command would cost about 2 s each).

A platform's two machines are brought up at its first cell, once per run, provisioned with the
matrix's OS packages (BUILDER_RUNTIME_PACKAGES on both, BUILDER_BUILD_PACKAGES on the build
machine), and destroyed when the run ends; a run killed with -9 leaves them to the next run,
which destroys them before bringing them up again.

Isolation. Many cells share one machine, so each cell gets, for as long as it runs:
  - its own unprivileged user, made for it and removed after: every command of the cell runs as
    that user (never as the ssh user, who may become root);
  - its own folder, /var/tmp/builder/<user>, that no other cell's user can enter; the guest
    paths a cell is given (/builder, /tmp/builder-work) are mapped into it, so two cells never
    see each other's files, and the folder is removed after;
  - the time limit (limits.timeout): on expiry every process of the cell's user is killed;
  - a process limit (limits.pids, `ulimit -u` of its own user) and a per-process address-space
    limit (limits.memory, `ulimit -v`).
It does NOT give: network isolation (the machine keeps its network: builder reaches it over
ssh, and provisioning installs packages), a memory limit on the cell as a whole (the docker
backend's cgroup), or a read-only system. Those are what the docker backend adds.

A cell's own user, folder and limits are vagrant/cell.py's.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import secrets
import shlex
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import vagrant as pyvagrant

from ... import runner
from ...errors import BuilderError, CommandError, ImageError
from ...matrix.model import Limits, Matrix, Platform
from ...matrix.plan import build_packages, runtime_packages
from ..base import GUEST_ROOT, Images, Role
from ..images import hash_folder
from ..ssh import Connection, Destination
from .cell import PATH, STOPPING, VagrantMachine, stopping, translate

VAGRANTFILE = "Vagrantfile"
# Vagrant asks the network for its own and its boxes' new versions unless told not to; a
# machine without network would wait on that.
QUIET = {"VAGRANT_CHECKPOINT_DISABLE": "1", "VAGRANT_BOX_UPDATE_CHECK_DISABLE": "1", "VAGRANT_NO_COLOR": "1"}

@dataclass(frozen=True)
class Described:
    """One machine as the Vagrantfile's MACHINES table describes it (written to $BUILDER_DESCRIBE)."""

    box: str | None = None  # None: the docker provider needs no box
    box_variable: str | None = None  # the environment variable that chooses the box
    family: str | None = None
    image: str | None = None  # docker-provider machines: the image builder builds for them,
    build_dir: str | None = None  # from this folder's Dockerfile,
    target: str | None = None  # and this target
    as_written: str = ""  # the entry's own JSON, sorted: part of the machines' image key

    @classmethod
    def table(cls, found: object) -> dict[str, Described]:
        """The table as read from JSON; a value that is not a string reads as absent."""
        if not isinstance(found, dict):
            return {}
        keys = cls.__dataclass_fields__
        return {
            str(name): cls(**{k: v for k, v in fields.items() if k in keys and k != "as_written" and isinstance(v, str)},
                           as_written=json.dumps(fields, sort_keys=True))
            for name, fields in found.items() if isinstance(fields, dict)
        }


@dataclass
class _Project:
    """Where a platform's machines are declared and what they are provisioned with."""

    root: Path  # the folder of the Vagrantfile (and of matrix.yaml)
    work: Path  # .builder/work/vagrant: Vagrant's state, logs and builder's key
    key: Path
    runtime_packages: tuple[str, ...] = ()
    build_packages: tuple[str, ...] = ()
    machines: dict[str, Described] = field(default_factory=dict)  # what the Vagrantfile describes

    @property
    def machines_use_docker(self) -> bool:
        return any(m.image for m in self.machines.values())

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            **QUIET,
            "VAGRANT_CWD": str(self.root),
            # Vagrant's state beside builder's other state, not a .vagrant/ in the project.
            "VAGRANT_DOTFILE_PATH": str(self.work / "machines"),
            "BUILDER_SSH_KEY": str(self.key),
            **extra,
        }

    def vagrant(self, log: Path, **extra: str) -> pyvagrant.Vagrant:
        log.parent.mkdir(parents=True, exist_ok=True)
        return pyvagrant.Vagrant(
            root=str(self.root), env=self.env(**extra),
            out_cm=pyvagrant.make_file_cm(str(log)), err_cm=pyvagrant.make_file_cm(str(log)),
        )


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").rstrip().splitlines()[-lines:])
    except OSError:
        return ""


class _Fleet:
    """One platform's two machines for this run: up at its first cell, destroyed at exit."""

    def __init__(self, platform: Platform, project: _Project) -> None:
        assert platform.machines is not None
        self.platform = platform
        self.project = project
        self.names: dict[Role, str] = {"build": platform.machines[0], "runtime": platform.machines[1]}
        self.lock = threading.Lock()
        self.admin = {role: threading.Lock() for role in self.names}  # useradd/userdel one at a time
        self.connections: dict[Role, Connection] = {}
        self.failure: BuilderError | None = None
        self.keep = False

    def connection(self, role: Role) -> Connection:
        stopping()
        with self.lock:
            if self.failure is not None:
                raise self.failure
            if not self.connections:
                try:
                    self._up()
                except BuilderError as exc:
                    self.failure = exc
                    raise
            return self.connections[role]

    def _up(self) -> None:
        atexit.register(self.down)
        self._destroy()  # what a killed run left: machines are made fresh, with today's packages
        # Vagrant's record of a machine whose `up` was cut short can name a container that is
        # gone, and then `up` fails on it: start from no record (the folder is builder's own; a
        # container it named carries a dead run's pid, which `builder clean` removes).
        for name in self.names.values():
            shutil.rmtree(self.project.work / "machines" / "machines" / name, ignore_errors=True)
        packages = {
            "BUILDER_RUNTIME_PACKAGES": " ".join(self.project.runtime_packages),
            "BUILDER_BUILD_PACKAGES": " ".join(self.project.build_packages),
            "BUILDER_PID": str(os.getpid()),
        }

        def up(name: str) -> None:
            log = self.project.work / f"{name}.log"
            log.unlink(missing_ok=True)
            try:
                self.project.vagrant(log, **packages).up(vm_name=name)
            except (subprocess.CalledProcessError, OSError) as exc:
                raise ImageError(
                    f"vagrant up {name} (platform {self.platform.name}) failed: {exc}",
                    hint=f"see {log}; fix the machine in {self.project.root / VAGRANTFILE}\n{_tail(log)}",
                ) from exc

        with ThreadPoolExecutor(max_workers=2) as pool:  # both machines at once: most of it is waiting
            list(pool.map(up, self.names.values()))
        for role, name in self.names.items():
            log = self.project.work / f"{name}.log"
            try:
                text = self.project.vagrant(log).ssh_config(vm_name=name)
            except subprocess.CalledProcessError as exc:
                raise ImageError(f"vagrant ssh-config {name} failed: {exc}", hint=f"see {log}\n{_tail(log)}") from exc
            dest = Destination.from_ssh_config(text).get(name)
            if dest is None:
                raise ImageError(f"vagrant ssh-config {name} names no Host {name}", hint=text[:500])
            self.connections[role] = Connection(dest).__enter__()

    def _destroy(self) -> None:
        def destroy(name: str) -> None:
            # Vagrant keeps a created machine's id in machines/NAME/PROVIDER/id under its dotfile
            # folder; none, nothing to do (and a `vagrant` call saved: each costs seconds).
            if not list((self.project.work / "machines" / "machines" / name).glob("*/id")):
                return
            log = self.project.work / f"{name}.log"
            try:
                self.project.vagrant(log).destroy(vm_name=name)
            except (subprocess.CalledProcessError, OSError):
                pass  # already gone

        # Threads, not an executor: this also runs at interpreter exit, when executors refuse work.
        threads = [threading.Thread(target=destroy, args=(name,)) for name in self.names.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def down(self) -> None:
        for connection in self.connections.values():
            try:
                connection.close()
            except (OSError, subprocess.SubprocessError):
                pass
        self.connections.clear()
        if not self.keep:
            self._destroy()
        if STOPPING.is_set() and self.project.machines_use_docker:
            # A `vagrant up` stopped half-way may have left a container Vagrant never recorded;
            # it carries our pid, as builder's own containers do.
            from .. import engine

            try:
                engine.remove_containers(engine.client(), os.getpid())
            except BuilderError:
                pass

    def destroy_command(self) -> str:
        """The host command that destroys this run's machines, for a shell to run when it ends."""
        env = self.project.env()
        words = [f"{k}={shlex.quote(env[k])}" for k in ("VAGRANT_CWD", "VAGRANT_DOTFILE_PATH", "BUILDER_SSH_KEY")]
        words += [f"{k}={v}" for k, v in QUIET.items()]
        names = " ".join(shlex.quote(n) for n in self.names.values())
        return f"env {' '.join(words)} vagrant destroy -f {names} >/dev/null 2>&1"


class VagrantBackend:
    """One per process (the registry hands out one): the machines outlive a cell, not the run."""

    same_paths = False  # each cell's paths are mapped into its own user's folder

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fleets: dict[str, _Fleet] = {}
        self._projects: dict[tuple[Path, str], _Project] = {}
        self._docker: Any = None

    def _engine(self) -> Any:
        """The Docker engine, made once, for the images of docker-provider machines."""
        from .. import engine

        with self._lock:
            if self._docker is None:
                self._docker = engine.client()
            return self._docker

    def leftovers(self, platforms: Sequence[Platform] = ()) -> list[str]:
        # Its docker-provider machines carry the engine's labels: the docker backend's leftovers
        # remove them; other machines are destroyed when their run ends, or by the next run.
        return []

    # -- before anything is fetched -----------------------------------------------------------

    def check(self, matrix: Matrix, platform: Platform) -> None:
        """Fail fast, naming what to do, when the platform's machines cannot be made here."""
        self._project(matrix, platform)

    def _project(self, matrix: Matrix, platform: Platform) -> _Project:
        key = (matrix.root.resolve(), platform.name)
        with self._lock:
            if key in self._projects:
                return self._projects[key]
        if shutil.which("vagrant") is None:
            raise ImageError(
                f"platform {platform.name} needs Vagrant, which is not installed",
                hint="apt-get install vagrant (the README's set-up command does it)",
            )
        root = matrix.root.resolve()
        if not (root / VAGRANTFILE).is_file():
            raise ImageError(
                f"platform {platform.name} is a vagrant platform, but there is no {root / VAGRANTFILE}",
                hint="declare its machines there (see the Vagrantfile shipped with builder)",
            )
        work = (matrix.settings.work / "vagrant").resolve()
        project = _Project(root=root, work=work, key=work / "id_ed25519")
        project.machines = self._describe(project, platform)
        assert platform.machines is not None
        missing = [m for m in platform.machines if m not in project.machines]
        if missing:
            raise ImageError(
                f"platform {platform.name} names machine(s) {', '.join(missing)}, which {root / VAGRANTFILE} does not declare",
                hint=f"declared there: {', '.join(project.machines) or 'none'}; fix machines: of the platform at {platform.location}",
            )
        self._check_boxes(project, platform)
        project.runtime_packages = runtime_packages(matrix, platform)
        project.build_packages = build_packages(matrix, platform)
        with self._lock:
            self._projects[key] = project
        return project

    def _describe(self, project: _Project, platform: Platform) -> dict[str, Described]:
        """The machines the Vagrantfile declares, and their boxes (the Vagrantfile writes them).

        Asking Vagrant costs about 2 s (it starts Ruby and loads every plugin), which would be
        most of a warm run. What it answers depends only on the Vagrantfile and the environment
        it reads, so the answer is kept under a key of both and asked again when either changes.
        """
        vagrantfile = (project.root / VAGRANTFILE).read_bytes()
        environment = sorted((k, v) for k, v in os.environ.items() if k.startswith(("BUILDER_", "VAGRANT_")))
        digest = hashlib.sha256(vagrantfile + json.dumps(environment).encode()).hexdigest()[:16]
        kept = project.work / f"machines-{digest}.json"
        try:
            kept_table = json.loads(kept.read_text())
            if isinstance(kept_table, dict):
                return Described.table(kept_table)
        except (OSError, ValueError):
            pass
        asked = self._ask_vagrant(project)
        project.work.mkdir(parents=True, exist_ok=True)
        partial = kept.with_suffix(".partial")
        partial.write_text(json.dumps(asked))
        os.replace(partial, kept)
        return Described.table(asked)

    def _ask_vagrant(self, project: _Project) -> object:
        log = project.work / "describe.log"
        with tempfile.TemporaryDirectory() as folder:
            described = Path(folder) / "machines.json"
            try:
                project.vagrant(log, BUILDER_DESCRIBE=str(described)).status()
            except (subprocess.CalledProcessError, OSError) as exc:
                raise ImageError(
                    f"vagrant cannot read {project.root / VAGRANTFILE} ({exc})", hint=f"see {log}\n{_tail(log)}"
                ) from exc
            try:
                found = json.loads(described.read_text())
            except (OSError, ValueError):
                raise ImageError(
                    f"{project.root / VAGRANTFILE} did not describe its machines",
                    hint="it must write its MACHINES table to $BUILDER_DESCRIBE (see the shipped Vagrantfile)",
                ) from None
        return found if isinstance(found, dict) else {}

    def _check_boxes(self, project: _Project, platform: Platform) -> None:
        assert platform.machines is not None
        wanted = {box: project.machines[m] for m in platform.machines if (box := project.machines[m].box)}
        if not wanted:
            return  # the docker provider needs no box
        log = project.work / "boxes.log"
        try:
            have = {box.name for box in project.vagrant(log).box_list()}
        except (subprocess.CalledProcessError, OSError) as exc:
            raise ImageError(f"vagrant box list failed ({exc})", hint=f"see {log}\n{_tail(log)}") from exc
        for box, machine in wanted.items():
            if box in have:
                continue
            variable = machine.box_variable
            choose = f", or set {variable} to a box you have (vagrant box list)" if variable else ""
            raise ImageError(
                f"the Vagrant box {box} of platform {platform.name} is not on this machine, and boxes cannot be "
                "downloaded during a run",
                hint=f"make it available: `vagrant box add {box}` where it can be downloaded, or "
                f"`vagrant box add --name {box} FILE.box` from a saved copy{choose}",
            )

    # -- the Backend protocol ---------------------------------------------------------------

    def prepare(
        self, matrix: Matrix, platform: Platform, files: Mapping[str, Path], log: Callable[[str], None]
    ) -> Images:
        """Check the machines can be made and name them by their inputs; nothing starts yet."""
        project = self._project(matrix, platform)
        _ensure_key(project.key)
        with self._lock:
            old = self._fleets.get(platform.name)
            if old is None or old.project is not project:  # one matrix per run; another project, other machines
                if old is not None:
                    old.down()
                self._fleets[platform.name] = _Fleet(platform, project)
        digest = hashlib.sha256()
        digest.update((project.root / VAGRANTFILE).read_bytes())
        assert platform.machines is not None
        for name in platform.machines:
            digest.update(project.machines[name].as_written.encode())
        # What docker-provider machines are built from (the build_dir the Vagrantfile reports).
        for name in platform.machines:
            build_dir = project.machines[name].build_dir
            if build_dir and (project.root / str(build_dir)).is_dir():
                hash_folder(digest, project.root / str(build_dir))
        digest.update(" ".join(project.runtime_packages).encode() + b"\0" + " ".join(project.build_packages).encode())
        tag = digest.hexdigest()[:16]
        ids = {name: self._machine_image(project, platform, name, log) for name in platform.machines}
        build, runtime = platform.machines
        return Images(build=f"vagrant:{build}:{tag}{ids[build]}", runtime=f"vagrant:{runtime}:{tag}{ids[runtime]}")

    def _machine_image(self, project: _Project, platform: Platform, name: str, log: Callable[[str], None]) -> str:
        """For a docker-provider machine, build the image the Vagrantfile names (once per inputs);
        "" for a box machine, whose box is checked in `check`."""
        described = project.machines[name]
        image, build_dir, target = described.image, described.build_dir, described.target
        if not (image and build_dir and target):
            return ""
        folder = project.root / str(build_dir)
        if not (folder / "Dockerfile").is_file():
            raise ImageError(f"machine {name} is built from {folder / 'Dockerfile'}, which does not exist",
                             hint=f"fix its build_dir in {project.root / VAGRANTFILE}")
        digest = hashlib.sha256(str(target).encode())
        hash_folder(digest, folder)
        repository = str(image).rpartition(":")[0] or str(image)
        pinned = f"{repository}:{target}-{digest.hexdigest()[:16]}"
        from .. import engine  # only docker-provider machines need the engine

        log(f"[{platform.name}] image {pinned} for machine {name}")
        found = engine.image_for(self._engine(), platform, folder, str(target), [pinned, str(image)])
        return f"@{found}"

    def _fleet(self, platform: Platform) -> _Fleet:
        with self._lock:
            fleet = self._fleets.get(platform.name)
        if fleet is None:
            raise ImageError(f"the machines of {platform.name} were not prepared")  # a bug: prepare comes first
        return fleet

    @contextmanager
    def machine(
        self, platform: Platform, images: Images, role: Role, limits: Limits, label: str
    ) -> Iterator[VagrantMachine]:
        fleet = self._fleet(platform)
        connection = fleet.connection(role)
        machine = VagrantMachine(connection, f"bc{secrets.token_hex(4)}", limits)
        with fleet.admin[role]:
            machine.open()
        try:
            yield machine
        finally:
            with fleet.admin[role]:
                machine.close()

    def interactive(
        self, platform: Platform, images: Images, role: Role, mounts: Mapping[str, str], env: Mapping[str, str]
    ) -> list[str]:
        """ssh into a cell made for the person (its own user and folder, the mounts copied in);
        the machines are destroyed when the shell ends."""
        fleet = self._fleet(platform)
        connection = fleet.connection(role)
        machine = VagrantMachine(connection, f"bc{secrets.token_hex(4)}", platform.limits)
        with fleet.admin[role]:
            machine.open()
        for host, guest in mounts.items():
            machine.copy_in(Path(host), guest.removesuffix(":ro"))
            if (Path(host) / "out").is_dir():  # a cell's stage: its out folder is the cell's to write
                machine.mkdir(guest.removesuffix(":ro") + "/out")
        folder = translate(GUEST_ROOT, machine.root)
        say = f"builder: this cell's {GUEST_ROOT} is {folder} on this machine"
        inner = f'echo {shlex.quote(say)}; cd {shlex.quote(folder)} 2>/dev/null || cd {shlex.quote(machine.root)}; exec sh -i'
        words = {k: translate(v, machine.root) for k, v in env.items()}
        remote = ["sudo", "-n", "-u", machine.user, "--", "env", "-i", f"PATH={PATH}",
                  *(f"{k}={v}" for k, v in words.items()), "sh", "-c", inner]
        ssh = Connection(connection.dest).argv(remote, tty=True)  # a plain ssh: this process is replaced
        fleet.keep = True  # the shell's own command destroys them when it ends
        fleet.down()
        return ["sh", "-c", f'"$@"; status=$?; {fleet.destroy_command()}; exit $status', "builder-shell", *ssh]


def _ensure_key(key: Path) -> None:
    """builder's own ssh key for its machines (never Vagrant's well-known insecure one)."""
    if key.is_file() and key.with_suffix(".pub").is_file():
        return
    key.parent.mkdir(parents=True, exist_ok=True)
    key.unlink(missing_ok=True)
    key.with_suffix(".pub").unlink(missing_ok=True)
    try:
        runner.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "builder-vagrant", "-f", str(key)], timeout=60)
    except CommandError as exc:
        raise ImageError(f"cannot make the ssh key {key}: {exc.output.strip()}", hint="install openssh-client") from exc


_BACKEND: VagrantBackend | None = None
_BACKEND_LOCK = threading.Lock()


def backend() -> VagrantBackend:
    global _BACKEND
    with _BACKEND_LOCK:
        if _BACKEND is None:
            _BACKEND = VagrantBackend()
        return _BACKEND

"""The docker backend: platform images from images/<platform>/Dockerfile, one container per step.

With builder.machines.engine, the only module that imports the docker SDK.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO

import docker
import docker.errors
import docker.models.containers
from docker.types import Mount

from ..errors import BuilderError, EngineError, ImageError, OutputTooLarge
from ..matrix.model import Limits, Matrix, Platform
from . import engine, ospackage
from . import images as host_images
from .base import GUEST_ROOT, Exec, Images, Role
from .engine import ENGINE_FAULTS, LABEL, client

GUEST_USER = "65534:65534"  # nobody: guests never run as root
# Every guest: a read-only root file system, no capabilities at all (not even for root in the
# guest), and no gaining privileges through setuid or file capabilities (no-new-privileges).
LOCKDOWN = {"read_only": True, "cap_drop": ["ALL"], "security_opt": ["no-new-privileges"]}
LOCKDOWN_ARGV = ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
KILL_ATTEMPTS, KILL_RETRY = 3, 2.0  # at a guest's time limit: kill, kill again, then remove it

@contextmanager
def _engine(doing: str) -> Iterator[None]:
    """Turn the engine going away while `doing` into one EngineError, so that the cell fails
    with that reason and the other cells and the run go on (the engine may be back for them)."""
    try:
        yield
    except ENGINE_FAULTS as exc:
        detail = " ".join(str(exc).split())[:160]
        raise EngineError(
            f"lost the guest while {doing}: the Docker engine stopped, restarted or refused "
            f"({type(exc).__name__}: {detail})",
            hint="when the engine is back, run the same command again: what was published is kept",
        ) from exc


def _stop_soon(container: docker.models.containers.Container) -> None:
    """End a finished guest without making anyone wait for its removal: guests are made with
    auto-remove, so a kill (a few hundredths of a second) ends it and the engine itself then
    deletes it and its anonymous volumes (deleting a build tree from the overlay takes 0.3-2 s),
    as for `docker run --rm`. The kill runs in a thread that is not a daemon, so the process
    still sends it before it exits; a run killed before that leaves labelled containers that the
    next run (or `builder clean`) removes."""

    def stop() -> None:
        try:
            container.kill()
        except ENGINE_FAULTS:
            # Safe to leave: stopped already (then the engine removes it), being removed by
            # `clean` (an interrupt), or the engine went away. What is left carries our labels
            # and pid, so the next run (or `builder clean`) removes it. There is no one to tell
            # here: this thread outlives the cell.
            pass

    threading.Thread(target=stop, name=f"stop {container.name}").start()


class DockerBackend:
    same_paths = True  # every container sees /builder and /tmp/builder-work

    def __init__(self, engine: docker.DockerClient | None = None) -> None:
        self._engine = engine  # given (the tests): every platform's engine; else each platform's own
        self._lock = threading.Lock()
        # Guests prestart() began, by machine()'s arguments: each is taken by one machine() call.
        self._spares: dict[tuple[str, Images, Role, Limits, str], Future[docker.models.containers.Container]] = {}

    @property
    def engine(self) -> docker.DockerClient:
        """The default engine's client."""
        return self.engine_of(None)

    def engine_of(self, platform: Platform | None) -> docker.DockerClient:
        """The client of the engine a platform's images and guests are on (its docker_host:)."""
        if self._engine is not None:
            return self._engine
        return client(platform.engine if platform is not None else engine.DEFAULT)

    # -- images -------------------------------------------------------------------------------

    def base(self, matrix: Matrix, platform: Platform, log: Callable[[str], None]) -> tuple[str, str]:
        """(reference, id) of the platform's base image, made or found locally."""
        assert platform.base is not None
        if platform.base.kind == "debootstrap":
            ref = host_images.base_tag(platform.base.value)
            found = engine.image_id(self.engine_of(platform), ref)
            if found:
                return ref, found
            # Made where it runs: debootstrap here, the root file system sent to the platform's
            # engine through its API (a remote engine reaches nothing of this machine's images).
            where = "" if platform.engine == engine.DEFAULT else f" on {platform.engine.label}"
            log(f"making base image {ref}{where} with debootstrap (once per engine)")
            tarball = host_images.debootstrap_tarball(
                platform.base.value, matrix.settings.debian_mirror, matrix.settings.work / "rootfs"
            )
            try:
                repo, tag = ref.split(":")
                self.engine_of(platform).api.import_image_from_file(str(tarball), repository=repo, tag=tag)
            finally:
                tarball.unlink(missing_ok=True)
            made = engine.image_id(self.engine_of(platform), ref)
            if made is None:
                raise ImageError(f"docker import of {ref} produced no image")
            return ref, made
        ref = (matrix.settings.registry_mirror or "") + platform.base.value
        found = engine.image_id(self.engine_of(platform), ref)
        if found:
            return ref, found
        log(f"pulling base image {ref}")
        try:
            image = self.engine_of(platform).images.pull(ref)
        except docker.errors.APIError as exc:
            raise ImageError(
                f"base image {ref} of platform {platform.name} is not on this machine and cannot be pulled "
                f"({exc.explanation or exc})",
                hint=f"make it available: set settings.registry_mirror (or BUILDER_REGISTRY_MIRROR) to a "
                f"registry that has it, or `docker load -i` a saved copy and `docker tag` it as {ref}",
            ) from exc
        return ref, str(image.id)

    def check(self, matrix: Matrix, platform: Platform) -> None:
        """A registry base must be on this machine or pullable before anything is fetched for it
        (CentOS's Python tarball is not worth fetching when centos:6 cannot be had), and a
        platform's engine elsewhere must answer."""
        host_images.dockerfile(platform)
        if platform.engine != engine.DEFAULT and self._engine is None:
            try:  # an engine elsewhere that does not answer stops its platforms only
                client(platform.engine)
            except EngineError as exc:
                raise ImageError(exc.message, hint=exc.hint) from exc
        if platform.base is not None and platform.base.kind == "image":
            self.base(matrix, platform, lambda line: None)

    def prepare(
        self, matrix: Matrix, platform: Platform, files: Mapping[str, Path], log: Callable[[str], None]
    ) -> Images:
        host_images.dockerfile(platform)
        base_ref, base_id = self.base(matrix, platform, log)
        built = self._interpreter(matrix, platform, base_ref, base_id, files, log) if platform.interpreter else None
        packages = built.files if built else ()
        digest = host_images.context_digest(matrix, platform, base_id, packages)[:16]
        tags = {role: f"builder/{platform.name}:{role}-{digest}" for role in ("runtime", "build")}
        ids = {role: engine.image_id(self.engine_of(platform), tag) for role, tag in tags.items()}
        context: Path | None = None
        for role in ("runtime", "build"):  # runtime first: build is FROM runtime and reuses its layers
            if ids[role] is None:
                log(f"building image {tags[role]}")
                context = context or host_images.build_context(matrix, platform, files, packages)
                args = host_images.build_args(matrix, platform, base_ref, packages)
                ids[role] = engine.build_image(self.engine_of(platform), platform, context, role, tags[role], args)
        return Images(build=str(ids["build"]), runtime=str(ids["runtime"]), packages=packages,
                      packages_about=built.about if built else None)

    # -- the interpreter package --------------------------------------------------------------

    def _interpreter(
        self, matrix: Matrix, platform: Platform, base_ref: str, base_id: str, files: Mapping[str, Path],
        log: Callable[[str], None],
    ) -> ospackage.Built:
        """The platform's interpreter packages: from the cache when a build with the same inputs
        passed its test, else built in the interpreter image (no network) and tested in the bare
        base image with the package installed, then kept in the cache."""
        tools_digest = host_images.context_digest(matrix, platform, base_id, (), lists=False)[:16]
        tag = f"builder/{platform.name}:{ospackage.BUILD_TARGET}-{tools_digest}"
        image = engine.image_id(self.engine_of(platform), tag)
        if image is None:
            log(f"building image {tag}")
            context = host_images.build_context(matrix, platform, files)
            image = engine.build_image(self.engine_of(platform), platform, context, ospackage.BUILD_TARGET, tag, {"BASE": base_ref})
        key = ospackage.input_key(platform, image)
        found = ospackage.cached(matrix, key)
        folder = ospackage.cache_folder(matrix, key)
        kept = f"builder/{platform.name}:{ospackage.KEPT_TAG}-{key[:16]}"
        where = self.engine_of(platform)
        if found is None and engine.unpack_folder(where, kept, folder):
            found = ospackage.cached(matrix, key)  # a checkout of the same machine built and tested it
        elif found is not None and engine.image_id(where, kept) is None:
            engine.keep_folder(where, folder, kept, platform)
        if found is not None:
            log(f"[{platform.name}] interpreter packages up to date: {', '.join(f.name for f in found.files)}")
            return found
        interpreter = platform.interpreter
        assert interpreter is not None
        label = f"{platform.name}/interpreter"
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="interpreter-", dir=matrix.settings.work) as scratch:
            work = Path(scratch)
            (work / "meta").mkdir()
            for name, text in ospackage.metadata(platform).items():
                (work / "meta" / name).write_text(text)
            sources = {}
            with self.machine(platform, Images(build=image, runtime=image), "build", platform.limits, label) as guest:
                for pin in interpreter.pins:
                    guest.copy_in(files[pin.sha256], f"{GUEST_ROOT}/sources/{files[pin.sha256].name}")
                    sources[pin.sha256] = f"{GUEST_ROOT}/sources/{files[pin.sha256].name}"
                guest.copy_in(ospackage.GUEST_SCRIPT, f"{GUEST_ROOT}/guest/{ospackage.GUEST_SCRIPT.name}")
                guest.copy_in(work / "meta", f"{GUEST_ROOT}/meta")
                guest.mkdir(f"{GUEST_ROOT}/out")
                env = ospackage.guest_env(platform, sources, f"{GUEST_ROOT}/meta", f"{GUEST_ROOT}/out")
                log(f"[{platform.name}] building the interpreter package {interpreter.package} "
                    f"(Python {interpreter.version}), offline")
                done = guest.run(["sh", f"{GUEST_ROOT}/guest/{ospackage.GUEST_SCRIPT.name}"], env=env,
                                 timeout=max(platform.limits.timeout, ospackage.BUILD_TIMEOUT), log=log)
                if done.timed_out:
                    raise ImageError(f"the interpreter package of {platform.name} did not build within "
                                     f"{max(platform.limits.timeout, ospackage.BUILD_TIMEOUT)} s",
                                     hint="raise the platform's limits.timeout, or build on a less busy machine")
                if done.returncode != 0:
                    last = [line for line in done.output.splitlines() if line.strip()][-1:] or ["no output"]
                    raise ImageError(
                        f"the interpreter package of {platform.name} failed to build: {last[0].strip()}",
                        hint=f"its log is the platform's image log; check interpreter: in {platform.location}",
                    )
                guest.copy_out(f"{GUEST_ROOT}/out", work / "out")
            build_seconds = time.monotonic() - started
            made = ospackage.order(sorted((work / "out").iterdir()), platform)
            log(f"[{platform.name}] interpreter built in {build_seconds:.0f} s: {', '.join(f.name for f in made)}")
            started = time.monotonic()
            result = self._test_interpreter(matrix, platform, base_ref, made[0], work, log)
            about = {"key": key, "files": [f.name for f in made], "tested": True, "build_seconds": round(build_seconds, 1),
                     "test_seconds": round(time.monotonic() - started, 1), "build_image": image, "base_image": base_id,
                     "sources": {p.name: {"version": p.version, "sha256": p.sha256} for p in interpreter.pins},
                     "configure": list(interpreter.configure), "prefix": interpreter.prefix, "test": result}
            staging = folder.with_name(folder.name + ".new")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            for path in made:
                shutil.copyfile(path, staging / path.name)
            (staging / "interpreter.json").write_text(json.dumps(about, indent=2, sort_keys=True) + "\n")
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(staging, folder)
        engine.keep_folder(where, folder, kept, platform)
        built = ospackage.cached(matrix, key)
        assert built is not None
        return built

    def _test_interpreter(
        self, matrix: Matrix, platform: Platform, base_ref: str, package: Path, work: Path, log: Callable[[str], None]
    ) -> dict[str, object]:
        """Install the package into the bare base image, then prove it there offline as nobody."""
        interpreter = platform.interpreter
        assert interpreter is not None
        context = work / "test-context"
        context.mkdir()
        shutil.copyfile(package, context / package.name)
        (context / "Dockerfile").write_text(ospackage.test_dockerfile(platform, package.name))
        tag = f"builder/{platform.name}:interpreter-test-{hashlib.sha256(package.read_bytes()).hexdigest()[:16]}"
        log(f"[{platform.name}] testing {package.name} in the bare {base_ref} with only it installed")
        image = engine.build_image(self.engine_of(platform), platform, context, "", tag, {"BASE": base_ref})
        check = work / "check"
        check.mkdir()
        certificate, key = ospackage.self_signed(check)
        spec = {"prefix": interpreter.prefix, "modules": list(interpreter.modules), "version": interpreter.version,
                "openssl": interpreter.openssl.version if interpreter.openssl else None, "family": platform.family,
                "certificate": f"{GUEST_ROOT}/check/{certificate.name}", "key": f"{GUEST_ROOT}/check/{key.name}"}
        (check / "spec.json").write_text(json.dumps(spec))
        guest_dir = ospackage.GUEST_SCRIPT.parent
        test_images = Images(build=image, runtime=image)
        with self.machine(platform, test_images, "runtime", platform.limits, f"{platform.name}/interpreter-test") as guest:
            for name in ("interpreter_check.py", "check.py", "_common.py"):
                guest.copy_in(guest_dir / name, f"{GUEST_ROOT}/guest/{name}")
            guest.copy_in(check, f"{GUEST_ROOT}/check")
            guest.mkdir(f"{GUEST_ROOT}/out")
            done = guest.run([platform.python, f"{GUEST_ROOT}/guest/interpreter_check.py", f"{GUEST_ROOT}/check/spec.json",
                              f"{GUEST_ROOT}/out/result.json"], timeout=600, log=log)
            guest.copy_out(f"{GUEST_ROOT}/out", work / "test-out")
        try:
            result: dict[str, object] = json.loads((work / "test-out" / "result.json").read_text())
        except (OSError, ValueError):
            result = {"reasons": [f"the test wrote no result (exit {done.returncode}): {done.output.strip()[-300:]}"]}
        reasons = result.get("reasons") or ([] if done.returncode == 0 else [f"exit {done.returncode}"])
        if reasons:
            raise ImageError(
                f"the interpreter package {package.name} of {platform.name} failed its test: {reasons[0]}",  # type: ignore[index]
                hint="every reason is in the platform's image log; check interpreter: (configure, modules) in "
                f"{platform.location}",
            )
        return result

    def leftovers(self, platforms: Sequence[Platform] = ()) -> list[str]:
        """What killed runs left on the engines of `platforms` (the default engine when none)."""
        where = dict.fromkeys(p.engine for p in platforms) or {engine.DEFAULT: None}
        removed: list[str] = []
        for address in where:
            removed += engine.remove_containers(client(address) if self._engine is None else self._engine)
        return removed

    # -- machines -----------------------------------------------------------------------------

    def _start(self, platform: Platform, images: Images, role: Role, limits: Limits, label: str
               ) -> docker.models.containers.Container:
        image = images.build if role == "build" else images.runtime
        # The root file system is read-only; a guest writes only /tmp (its work folder) and the
        # folders under /builder it is given. /builder is an anonymous volume (removed with the
        # container) because the engine copies files in (copy_in) only onto a volume of a
        # read-only container: a copy into a tmpfs would land in the image's layer beneath it.
        # A test guest writes only its fresh environment and the installed artifact: keeping
        # /tmp in memory makes that faster and the container's removal instant (removing a
        # virtualenv's thousands of files from the overlay took 0.5-1.5 s per test). Builds
        # keep /tmp on disk, an anonymous volume: a build tree must not count against the memory limit.
        mounts = [Mount(GUEST_ROOT, None, type="volume")]
        tmpfs = {"/tmp": "rw,exec,nosuid,nodev,mode=1777"} if role == "runtime" else {}
        if role == "build":
            mounts.append(Mount("/tmp", None, type="volume"))
        try:
            container = self.engine_of(platform).containers.create(
                image,
                command=["sh", "-c", "exec sleep 2147483"],
                tmpfs=tmpfs,
                mounts=mounts,
                **LOCKDOWN,  # type: ignore[arg-type]
                network_mode="none",
                mem_limit=limits.memory,
                memswap_limit=limits.memory,
                pids_limit=limits.pids,
                labels={LABEL: "cell", f"{LABEL}.cell": label, **engine.owned()},
                auto_remove=True,  # the engine removes it (and its volumes) once it stops: _stop_soon
                detach=True,
            )
            container.start()
        except ENGINE_FAULTS as exc:
            raise EngineError(f"cannot start a {role} container of {platform.name}: {exc}") from exc
        return container

    def prestart(self, platform: Platform, images: Images, role: Role, limits: Limits, label: str) -> None:
        """Start the guest that machine() will be asked for with these arguments, in the
        background, so that its start overlaps other work (the test guest of a cell while the
        cell builds, or while another cell is tested). It is as fresh as any guest: made for that
        one machine() call, nothing runs in it before. One not asked for is stopped by release()."""
        key = (platform.name, images, role, limits, label)
        with self._lock:
            if key in self._spares:
                return
            future: Future[docker.models.containers.Container] = Future()
            self._spares[key] = future

        def start() -> None:
            try:
                future.set_result(self._start(platform, images, role, limits, label))
            except BaseException as exc:  # handed to the machine() call that takes it
                future.set_exception(exc)

        threading.Thread(target=start, name=f"prestart {label}", daemon=True).start()

    def release(self) -> None:
        """Stop the started guests no machine() call took (their cell failed or was skipped)."""
        with self._lock:
            spares, self._spares = list(self._spares.values()), {}
        for future in spares:
            try:
                _stop_soon(future.result())
            except BaseException:  # noqa: BLE001 - it never started: nothing to stop
                pass

    @contextmanager
    def machine(
        self, platform: Platform, images: Images, role: Role, limits: Limits, label: str
    ) -> Iterator[DockerMachine]:
        with self._lock:
            spare = self._spares.pop((platform.name, images, role, limits, label), None)
        container = spare.result() if spare is not None else self._start(platform, images, role, limits, label)
        try:
            yield DockerMachine(container, max_output=limits.output_bytes, memory=limits.memory)
        finally:
            _stop_soon(container)

    def interactive(
        self, platform: Platform, images: Images, role: Role, mounts: Mapping[str, str], env: Mapping[str, str]
    ) -> list[str]:
        """docker run for a person: the cell's user, mounts and environment, and no network."""
        image = images.build if role == "build" else images.runtime
        argv = ["docker", *_cli_engine(platform, bool(mounts)), "run", "--rm", "-i", "--network", "none",
                "--user", GUEST_USER, "-w", "/builder"]
        argv += [*LOCKDOWN_ARGV, "--tmpfs", "/tmp:rw,exec,nosuid,nodev,mode=1777"]
        argv += ["--label", f"{LABEL}=shell", *(a for k, v in engine.owned().items() for a in ("--label", f"{k}={v}"))]
        for host, guest in mounts.items():
            argv += ["-v", f"{host}:{guest}"]
        for key, value in env.items():
            argv += ["-e", f"{key}={value}"]
        return [*argv, image, "bash"]


def _cli_engine(platform: Platform, mounts: bool) -> list[str]:
    """The docker command line's options that reach the platform's engine. A shell's files are
    bind-mounted from this machine, so it opens on an engine of this machine only."""
    where = platform.engine
    if where == engine.DEFAULT:
        return []
    if mounts and not (where.host or "").startswith("unix://"):
        raise EngineError(
            f"a shell of {platform.name} mounts this machine's files, and its engine ({where.label}) is elsewhere",
            hint=f"open it on the engine's machine (a checkout of the project there), or drop docker_host "
            f"from the platform at {where.location or platform.location} while you debug it",
        )
    if where.context:
        return ["--context", where.context]
    argv = ["--host", str(where.host)]
    if where.tls is not None:
        argv += ["--tlsverify", "--tlscacert", str(where.tls / "ca.pem"), "--tlscert", str(where.tls / "cert.pem"),
                 "--tlskey", str(where.tls / "key.pem")]
    return argv


class DockerMachine:
    def __init__(
        self, container: docker.models.containers.Container, max_output: int | None = None, memory: str | None = None
    ) -> None:
        self.container = container
        self.max_output = max_output  # bytes copy_out accepts (limits.output)
        self.memory = memory  # limits.memory, as the matrix says it
        self._oom_kills = 0  # the container's OOM kills seen so far

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        user: str | None = GUEST_USER,
        timeout: float | None = None,
        log: Callable[[str], None] | None = None,
    ) -> Exec:
        with _engine("running " + PurePosixPath(argv[1] if len(argv) > 1 else argv[0]).name):
            return self._run(argv, env=env, user=user, timeout=timeout, log=log)

    def _run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None,
        user: str | None,
        timeout: float | None,
        log: Callable[[str], None] | None,
    ) -> Exec:
        client = self.container.client
        assert client is not None  # a container the SDK listed or made has its client
        api = client.api
        exec_id = api.exec_create(
            self.container.id, list(argv), environment=dict(env or {}), user=user or "", workdir="/"
        )["Id"]
        timed_out = threading.Event()
        kill_failed: list[Exception] = []

        def expire() -> None:
            timed_out.set()
            for attempt in range(KILL_ATTEMPTS):  # the engine may be busy: try again, then remove it
                try:
                    if attempt < KILL_ATTEMPTS - 1:
                        self.container.kill()
                    else:
                        self.container.remove(force=True, v=True)
                    return
                except docker.errors.NotFound:
                    return  # gone already: nothing of it runs on
                except ENGINE_FAULTS as exc:
                    if attempt == KILL_ATTEMPTS - 1:
                        kill_failed.append(exc)  # the time limit was not enforced: said below, never ignored
                        return
                    time.sleep(KILL_RETRY)

        timer = threading.Timer(timeout, expire) if timeout else None
        if timer:
            timer.daemon = True
            timer.start()
        chunks: list[str] = []
        pending = ""
        try:
            for chunk in api.exec_start(exec_id, stream=True):
                if kill_failed:
                    break
                text = chunk.decode("utf-8", "replace")
                chunks.append(text)
                if log:
                    pending += text
                    *lines, pending = pending.split("\n")
                    for line in lines:
                        log(line)
        finally:
            if timer:
                timer.cancel()
        if log and pending:
            log(pending)
        if kill_failed:
            raise EngineError(
                f"could not stop a guest at its time limit ({timeout} s, limits.timeout): {kill_failed[0]}",
                hint=f"remove it by hand: docker rm -f -v {self.container.name}",
            )
        if timed_out.is_set():  # killed: the engine is removing it, there is nothing left to ask
            return Exec(-9, "".join(chunks) + f"\n(stopped after {timeout} s)", timed_out=True)
        code = api.exec_inspect(exec_id).get("ExitCode")
        if code != 0:
            # A command cut short because its container was stopped (an engine shutting down
            # stops every container) is the engine's failure, not the package's.
            self.container.reload()
            if self.container.status != "running":
                raise docker.errors.DockerException(f"the container was {self.container.status} from outside")
            kills = self._count_oom_kills()
            if kills > self._oom_kills:
                self._oom_kills = kills
                return Exec(code if code is not None else -1,
                            "".join(chunks) + f"\n(killed: over limits.memory ({self.memory}))", out_of_memory=True)
        return Exec(code if code is not None else -1, "".join(chunks))

    def _count_oom_kills(self) -> int:
        """How many processes the kernel killed in this guest for going over its memory limit
        (cgroup v2's memory.events, or v1's memory.oom_control, as the guest sees its own)."""
        client = self.container.client
        assert client is not None
        found = client.api.exec_create(
            self.container.id,
            ["sh", "-c", "cat /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control 2>/dev/null"],
            user=GUEST_USER,
        )["Id"]
        text = client.api.exec_start(found).decode("utf-8", "replace")
        counts = [int(line.split()[1]) for line in text.splitlines() if line.startswith("oom_kill ")]
        return max(counts, default=0)

    def copy_in(self, src: Path, dest: str, *, writable: bool = False, mkdirs: Sequence[str] = ()) -> None:
        """Copy a host file or folder to dest, owned by root and read-only unless writable; with
        `mkdirs` (guest paths under dest), empty folders the guest user may write, in the same
        copy (one call to the engine instead of one more per folder). The archive is spooled to
        a temporary file and streamed to the engine: an sdist or a prepared environment is never
        held in memory (twice, as bytes), whatever its size."""
        owner = 65534 if writable else 0
        volume = PurePosixPath(GUEST_ROOT)  # the only place of a read-only guest the engine copies onto
        target = PurePosixPath(dest)
        if target != volume and volume not in target.parents:
            raise ValueError(f"copy_in: {dest} is not under {GUEST_ROOT}")
        with tempfile.TemporaryFile(prefix="builder-copy-in-") as spool:
            self._spool_in(spool, src, target, volume, owner, writable, mkdirs)
            spool.seek(0)
            with _engine(f"copying {src.name} in"):
                self.container.put_archive(str(volume), spool)

    @staticmethod
    def _spool_in(spool: IO[bytes], src: Path, target: PurePosixPath, volume: PurePosixPath, owner: int,
                  writable: bool, mkdirs: Sequence[str]) -> None:
        with tarfile.open(fileobj=spool, mode="w") as tar:
            for parent in reversed(target.relative_to(volume).parents[:-1]):
                info = tarfile.TarInfo(str(parent))
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)

            def fix(info: tarfile.TarInfo) -> tarfile.TarInfo:
                info.uid = info.gid = owner
                info.uname = info.gname = ""
                executable = info.isdir() or info.mode & 0o111
                info.mode = (0o755 if executable else 0o644) if writable else (0o555 if executable else 0o444)
                return info

            if target == volume:  # the volume's own folder stays root's, 0755
                for child in sorted(src.iterdir()):
                    tar.add(str(child), arcname=child.name, filter=fix)
            else:
                tar.add(str(src), arcname=str(target.relative_to(volume)), filter=fix)
            for folder in mkdirs:
                path = PurePosixPath(folder)
                if target != path and target not in path.parents:
                    raise ValueError(f"copy_in: {folder} is not under {target}")
                info = tarfile.TarInfo(str(path.relative_to(volume)))
                info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o755, 65534, 65534
                tar.addfile(info)

    def mkdir(self, dest: str) -> None:
        """An empty folder the guest user may write: the only writable place we give it."""
        with tempfile.TemporaryDirectory() as empty:
            self.copy_in(Path(empty), dest, writable=True)

    def copy_out(self, src: str, dest: Path) -> None:
        """Copy a guest folder's contents into dest; files end up owned by the invoking user.

        The archive is unpacked into a folder beside dest and moved into place only when all of
        it passed, so a refused member (or an output over the limit) keeps nothing of the copy."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile() as spool, tempfile.TemporaryDirectory(dir=dest.parent, prefix=".copy-") as landing:
            with _engine(f"copying {src} out"):
                stream, _ = self.container.get_archive(src)
                size = 0
                for chunk in stream:
                    size += len(chunk)
                    if self.max_output is not None and size > self.max_output:
                        stream.close()  # type: ignore[attr-defined]  # typed Iterator, really a generator
                        raise OutputTooLarge(src, self.max_output)
                    spool.write(chunk)
            spool.seek(0)
            with tarfile.open(fileobj=spool, mode="r") as tar:
                top = PurePosixPath(src).name
                members = []
                for member in tar.getmembers():
                    parts = PurePosixPath(member.name).parts
                    if not parts or parts[0] != top or len(parts) == 1:
                        continue
                    member.name = str(PurePosixPath(*parts[1:]))
                    members.append(member)
                # The "data" filter refuses links out of the folder, devices and absolute names,
                # and drops the guest's ownership: a hostile build cannot write outside it.
                try:
                    tar.extractall(landing, members=members, filter="data")
                except tarfile.FilterError as exc:
                    raise BuilderError(
                        f"refused the guest's output {src}: {exc}; nothing of it was kept",
                        hint="the package's build or test wrote a link out of its folder or a special file there",
                    ) from exc
            dest.mkdir(exist_ok=True)
            for entry in os.listdir(landing):
                os.replace(os.path.join(landing, entry), dest / entry)

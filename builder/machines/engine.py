"""The Docker engine: the client, builder's labelled containers, and building an image.

The only modules that import the docker SDK are this one and the docker backend. Both backends
use it: the docker backend for its images and guests, the vagrant backend for the images of its
docker-provider machines.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import tarfile
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import docker
import docker.constants
import docker.errors
import docker.models.containers
import docker.tls
from requests.exceptions import RequestException
from urllib3.exceptions import HTTPError as Urllib3Error

from ..errors import EngineError, ImageError
from ..matrix.model import Engine, Platform, file_of

# What talking to an engine that went away (stopped, restarted, crashed) raises: the SDK's own
# errors, requests' and urllib3's, and plain socket errors from a streamed exec.
ENGINE_FAULTS = (docker.errors.DockerException, RequestException, Urllib3Error, OSError)
LABEL = "io.builder"  # every container and image we create carries it, for `clean`
API_TIMEOUT = 900
# The machine a guest's builder runs on: an engine elsewhere may hold the guests of builders on
# other machines too, whose pids mean nothing here.
MACHINE = socket.gethostname()


def owned() -> dict[str, str]:
    """The labels that tie a container to this builder process: its pid and its machine."""
    return {f"{LABEL}.pid": str(os.getpid()), f"{LABEL}.machine": MACHINE}


_CLIENTS: dict[Engine, docker.DockerClient] = {}  # one per engine, for the whole process
_CLIENTS_LOCK = threading.Lock()
DEFAULT = Engine()


def client(where: Engine = DEFAULT) -> docker.DockerClient:
    """The client of engine `where` (a platform's `engine`), made and pinged once per process.

    Every address is the docker SDK's own: ssh:// through the OpenSSH client (its keys, its
    known_hosts), tcp:// through the SDK's TLS with the client's certificate, a docker context
    as the SDK reads it, the default one from the environment (DOCKER_HOST) or the local socket."""
    with _CLIENTS_LOCK:
        found = _CLIENTS.get(where)
        if found is None:
            found = _CLIENTS[where] = _connect(where)
        return found


def clients() -> list[docker.DockerClient]:
    """The clients this process made so far: the engines it may have left guests on."""
    with _CLIENTS_LOCK:
        return list(_CLIENTS.values())


def _connect(where: Engine) -> docker.DockerClient:
    at = f" ({where.location})" if where.location else ""
    try:
        if where.context:
            from docker.context import ContextAPI

            try:
                context = ContextAPI.get_context(where.context)
            except docker.errors.ContextException as exc:
                raise EngineError(f"cannot read docker context {where.context}{at}: {exc}") from exc
            if context is None or not context.Host:
                raise EngineError(f"there is no docker context {where.context}{at}",
                                  hint=f"create it (`docker context create {where.context} --docker host=...`), "
                                  "or name one `docker context ls` lists")
            tls = context.TLSConfig
            made = _tls_client(context.Host, tls) if isinstance(tls, docker.tls.TLSConfig) else docker.DockerClient(
                base_url=context.Host, timeout=API_TIMEOUT, use_ssh_client=context.Host.startswith("ssh://"))
        elif where.tls is not None:
            made = _tls_client(where.host or "", _tls(where, at))
        elif where.host:
            made = docker.DockerClient(base_url=where.host, timeout=API_TIMEOUT, use_ssh_client=where.host.startswith("ssh://"))
        else:
            made = docker.from_env(timeout=API_TIMEOUT)
        made.ping()
    except (docker.errors.DockerException, RequestException, OSError) as exc:
        if where == DEFAULT:
            raise EngineError(
                f"the Docker engine is not reachable ({exc.__class__.__name__})",
                hint="start it as root (`dockerd &`, or `systemctl start docker`), or set DOCKER_HOST; "
                "the README's set-up command installs and starts it",
            ) from exc
        detail = " ".join(str(exc).split())[:200]
        raise EngineError(
            f"the Docker engine at {where.label}{at} is not reachable ({exc.__class__.__name__}: {detail})",
            hint="check that its dockerd runs and answers there (`docker --host ADDRESS version`); for ssh:// that "
            "`ssh USER@HOST docker version` works without a password prompt",
        ) from exc
    return made


def _tls_client(base_url: str, tls: docker.tls.TLSConfig) -> docker.DockerClient:
    """A client over TLS that verifies the engine with `tls`'s CA and nothing else.

    requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (often set for a proxy's CA, as on this
    machine for the package index) override a session's own CA file, and the engine's then fails
    to verify (docker-py #2433). The client's session is told not to read the environment, so the
    engine's CA applies; it is made once with a floor version to ask the engine for its API
    version with that session, then with the engine's own."""
    probe = docker.DockerClient(base_url=base_url, tls=tls, timeout=API_TIMEOUT,
                                version=docker.constants.MINIMUM_DOCKER_API_VERSION)
    probe.api.trust_env = False  # no CA bundle or proxy from the environment for the engine
    try:
        version = str(probe.api.version(api_version=False)["ApiVersion"])
    finally:
        probe.close()
    made = docker.DockerClient(base_url=base_url, tls=tls, timeout=API_TIMEOUT, version=version)
    made.api.trust_env = False
    return made


def _tls(where: Engine, at: str) -> docker.tls.TLSConfig:
    """tcp://: the client's certificate and the CA that signed the engine's, always verified."""
    assert where.tls is not None
    files = {name: where.tls / name for name in ("ca.pem", "cert.pem", "key.pem")}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise EngineError(f"the TLS files of {where.label}{at} are missing: {', '.join(missing)}",
                          hint="put the client's ca.pem, cert.pem and key.pem (made with the engine's --tlsverify "
                          "certificates) in that folder, or point docker_tls: at the folder that holds them")
    return docker.tls.TLSConfig(client_cert=(str(files["cert.pem"]), str(files["key.pem"])),
                                ca_cert=str(files["ca.pem"]), verify=True)


def image_id(engine: docker.DockerClient, ref: str) -> str | None:
    try:
        return str(engine.images.get(ref).id)
    except docker.errors.ImageNotFound:
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def listed(engine: docker.DockerClient, **filters: str) -> list[docker.models.containers.Container]:
    """The containers matching `filters`, skipping any removed while we look.

    A plain `containers.list(all=True)` inspects each container after listing them and raises
    NotFound for one removed in between; ours are removed in the background as cells end.
    """
    found = []
    wanted: dict[str, str | list[str] | bool] = dict(filters)
    for container in engine.containers.list(all=True, sparse=True, filters=wanted):
        try:
            container.reload()
        except docker.errors.NotFound:
            continue
        found.append(container)
    return found


def remove_containers(engine: docker.DockerClient, pid: int | None = None) -> list[str]:
    """Remove builder's containers: those of `pid`, or else those whose builder process is gone.

    Every container we start carries our labels and our pid, so a run killed with -9 leaves
    nothing that the next run (or `builder clean`) cannot find.
    """
    removed: list[str] = []
    failed: list[str] = []
    # The listing's own labels and names: no inspect per container (the engine may hold many,
    # other runs' among them, and every run asks this before its first cell).
    for container in engine.containers.list(all=True, sparse=True, filters={"label": LABEL}):
        labels = container.attrs.get("Labels") or {}
        name = (container.attrs.get("Names") or [container.id])[0].lstrip("/")
        owner = labels.get(f"{LABEL}.pid", "")
        if not owner.isdigit():
            # Not one we started: every guest carries its run's pid. A step of an image build
            # FROM a builder image inherits that image's labels, and must not be killed here.
            continue
        if labels.get(f"{LABEL}.machine", MACHINE) != MACHINE:
            continue  # a builder's on another machine, sharing this engine: its pid is not ours to judge
        if pid is not None and owner != str(pid):
            continue
        if pid is None and owner.isdigit() and _alive(int(owner)) and int(owner) != os.getpid():
            continue
        try:
            container.remove(force=True, v=True)  # v: with its anonymous volumes
            removed.append(name)
        except docker.errors.NotFound:
            pass  # gone while we looked
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: its removal is already under way (a finished guest's)
                failed.append(f"{name} ({exc.explanation or exc})")
    if failed:  # a guest left running keeps its limits' worth of the machine: say so, never pass
        raise EngineError(
            "cannot remove container " + ", ".join(failed),
            hint="remove by hand: docker rm -f -v " + " ".join(f.split(" ", 1)[0] for f in failed),
        )
    return removed



def build_image(
    engine: docker.DockerClient, platform: Platform, context: Path, target: str, tag: str, args: dict[str, str]
) -> str:
    """Build `target` of the Dockerfile in `context` as `tag`. On failure the message names the
    build's own error line (apt's `E: Unable to locate package X`), and the hint ends with the
    build output's tail, which the pipeline keeps in the platform's log."""
    try:
        image, _ = engine.images.build(
            path=str(context),
            target=target,
            tag=tag,
            buildargs=args,
            labels={LABEL: "image", f"{LABEL}.platform": platform.name},
            rm=True,
            forcerm=True,
            pull=False,
        )
    except docker.errors.BuildError as exc:
        # The step's stderr comes wrapped in terminal colours (ESC[91m ... ESC[0m): drop them.
        output = _ANSI.sub("", "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log))
        if output and not output.endswith("\n"):
            output += "\n"
        raise ImageError(
            f"the {target} image of {platform.name} failed to build: {_decisive(output, str(exc.msg))}",
            hint=f"fix {platform.image_dir / 'Dockerfile'} or the system packages in {file_of(platform.location)}\n"
            f"the build's last lines:\n{_tail(output)}",
        ) from exc
    except ENGINE_FAULTS as exc:  # the engine refused, or went away while building
        raise ImageError(f"the {target} image of {platform.name} failed to build: {exc}") from exc
    return str(image.id)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_RUN_FAILED = re.compile(r"^The command '(?:/bin/sh -c )?(.*)' returned a non-zero code: (\d+)$", re.S)


def _decisive(output: str, msg: str) -> str:
    """The line of a failed image build worth a reason: the last error line of the step's own
    output (apt's `E: ...`, else a line saying error), with the engine's summary shortened."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("E: ")] or [
        line for line in lines if "error" in line.lower() and not line.startswith("Step ") and line != msg.strip()
    ]
    found = _RUN_FAILED.match(msg.strip())
    summary = f"RUN {found.group(1).split()[0]} ... exited {found.group(2)}" if found else msg.strip()
    return f"{ours[-1]} ({summary})" if ours else summary


def _tail(output: str, lines: int = 40, limit: int = 4000) -> str:
    return "\n".join(output.rstrip().splitlines()[-lines:])[-limit:]


def image_for(engine: docker.DockerClient, platform: Platform, context: Path, target: str, tags: Sequence[str]) -> str:
    """The id of `context`'s Dockerfile `target`, built once per first tag (a digest of its
    inputs) and also given the other tags. For the vagrant backend's docker-provider machines."""
    found = image_id(engine, tags[0]) or build_image(engine, platform, context, target, tags[0], {})
    for ref in tags[1:]:
        repository, _, tag = ref.rpartition(":")
        engine.images.get(found).tag(repository, tag)
    return found


def image_from_text(engine: docker.DockerClient, dockerfile: str, tag: str, args: dict[str, str], what: str) -> str:
    """The id of the image a one-file Dockerfile makes (a helper image: no context), built once per tag."""
    import io

    found = image_id(engine, tag)
    if found:
        return found
    try:
        image, _ = engine.images.build(
            fileobj=io.BytesIO(dockerfile.encode()), tag=tag, buildargs=args, rm=True, forcerm=True, pull=False,
            labels={LABEL: "helper"},
        )
    except docker.errors.BuildError as exc:
        output = _ANSI.sub("", "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log))
        raise ImageError(f"the {what} image {tag} failed to build: {_decisive(output, str(exc.msg))}",
                         hint=f"the build's last lines:\n{_tail(output)}") from exc
    except ENGINE_FAULTS as exc:
        raise ImageError(f"the {what} image {tag} failed to build: {exc}") from exc
    return str(image.id)


def run_once(engine: docker.DockerClient, image: str, argv: Sequence[str], timeout: float = 300) -> tuple[int, str]:
    """Run `argv` in a fresh container of `image` with no network, as nobody, read-only, and
    return its exit code and output. The container carries our pid, like every guest, so a
    killed run's is found by `clean`."""
    try:
        container = engine.containers.create(
            image, command=list(argv), network_mode="none", user="65534:65534", read_only=True,
            cap_drop=["ALL"], security_opt=["no-new-privileges"], tmpfs={"/tmp": "rw,nosuid,nodev,mode=1777"},
            labels={LABEL: "helper", **owned()}, detach=True,
        )
    except ENGINE_FAULTS as exc:
        raise EngineError(f"cannot start a helper container of {image}: {exc}") from exc
    try:
        container.start()
        status = container.wait(timeout=timeout)
        output = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        return int(status.get("StatusCode", 1)), output
    except ENGINE_FAULTS as exc:
        raise EngineError(f"a helper container of {image} failed: {exc}") from exc
    finally:
        try:
            container.remove(force=True, v=True)
        except ENGINE_FAULTS:
            pass


def keep_folder(engine: docker.DockerClient, folder: Path, tag: str, platform: Platform) -> str:
    """Keep `folder`'s files in the engine's storage as an image of them alone (FROM scratch, under
    /kept), tagged `tag`: content the engine keeps as it keeps the platform's images, so a fresh
    checkout on the same machine (or CI's clean clone) finds it again."""
    with tempfile.TemporaryDirectory(prefix="keep-") as scratch:
        context = Path(scratch)
        shutil.copytree(folder, context / "kept")
        (context / "Dockerfile").write_text("FROM scratch\nCOPY kept /kept\n")
        return build_image(engine, platform, context, "", tag, {})


def unpack_folder(engine: docker.DockerClient, ref: str, dest: Path) -> bool:
    """Copy the files keep_folder kept in image `ref` into `dest` (made afresh). False when the
    engine has no such image."""
    if image_id(engine, ref) is None:
        return False
    container = engine.containers.create(ref, command=["/kept"], network_disabled=True,
                                         labels={LABEL: "helper", **owned()})
    try:
        stream, _ = container.get_archive("/kept")
        with tempfile.TemporaryFile() as buffer:
            for chunk in stream:
                buffer.write(chunk)
            buffer.seek(0)
            with tarfile.open(fileobj=buffer) as archive:
                staging = dest.with_name(dest.name + ".unpacking")
                shutil.rmtree(staging, ignore_errors=True)
                staging.mkdir(parents=True)
                archive.extractall(staging, filter="data")
                shutil.rmtree(dest, ignore_errors=True)
                os.replace(staging / "kept", dest)
                staging.rmdir()
    finally:
        container.remove(force=True)
    return True

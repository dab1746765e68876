"""docker_host: / docker_context: in the matrix, the engine address each gives, the docker
command line a shell gets, and -j per engine in the stages (fakes: no engine here)."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from builder.cells import pipeline
from builder.cells.state import StageResult
from builder.errors import ConfigError, EngineError
from builder.machines import docker as backend
from builder.machines.base import Images
from builder.matrix import plan
from builder.matrix.load import loads
from builder.matrix.model import Engine

SIX = "1e61c37477a1626458e36f7b1d82aa5c9b094fa4802892072e49de9c60c4c926"


def matrix_text(*platform_lines: str, other: str = "") -> str:
    extra = "".join(f"    {line}\n" for line in platform_lines)
    return (
        "platforms:\n"
        "  - name: debian12\n"
        "    family: debian\n"
        "    base: {debootstrap: bookworm}\n"
        "    python: /usr/bin/python3\n"
        f"{extra}"
        "  - name: debian11-py27\n"
        "    family: debian\n"
        "    base: {debootstrap: bullseye}\n"
        "    python: /usr/bin/python2.7\n"
        f"{other}"
        "packages:\n"
        f"  - {{name: six, version: 1.16.0, sha256: {SIX}}}\n"
        f"  - {{name: simplejson, version: 3.19.3, sha256: {SIX}}}\n"
    )


def engine_of(*lines: str) -> Engine:
    return loads(matrix_text(*lines), Path("/p/matrix.yaml")).platforms[0].engine


def test_the_default_engine_when_nothing_is_said() -> None:
    found = engine_of()
    assert found == Engine() and found.label == "the default Docker engine"


@pytest.mark.parametrize(("line", "host"), [
    ("docker_host: unix:///run/docker-2/docker.sock", "unix:///run/docker-2/docker.sock"),
    ("docker_host: ssh://builder@buildbox", "ssh://builder@buildbox"),
    ("docker_host: ssh://buildbox:2222", "ssh://buildbox:2222"),
])
def test_an_engine_address(line: str, host: str) -> None:
    found = engine_of(line)
    assert found.host == host and found.tls is None and found.context is None
    assert found.location == "matrix.yaml:6: platforms[0].docker_host"  # for the errors of connecting


def test_tcp_takes_the_tls_folder_beside_the_matrix() -> None:
    found = engine_of("docker_host: tcp://buildbox:2376", "docker_tls: certs/buildbox")
    assert found.host == "tcp://buildbox:2376" and found.tls == Path("/p/certs/buildbox")


def test_a_context() -> None:
    found = engine_of("docker_context: buildbox")
    assert found == Engine(context="buildbox") and found.label == "docker context buildbox"


def test_the_engine_is_the_platforms_own() -> None:
    matrix = loads(matrix_text("docker_host: ssh://builder@buildbox"), Path("matrix.yaml"))
    assert matrix.platforms[0].engine.host == "ssh://builder@buildbox"
    assert matrix.platforms[1].engine == Engine()


WRONG = [
    ("tcp without TLS", ["docker_host: tcp://buildbox:2376"], 6, "platforms[0].docker_host: tcp://buildbox:2376 needs docker_tls",
     "ca.pem, cert.pem and key.pem"),
    ("tcp without port", ["docker_host: tcp://buildbox", "docker_tls: certs"], 6, "is not tcp://HOST:PORT", "tcp://buildbox:2376"),
    ("tcp with a bad port", ["docker_host: tcp://buildbox:lots", "docker_tls: certs"], 6, "has no valid port", "unix:///"),
    ("relative socket", ["docker_host: unix://docker.sock"], 6, "does not name a socket by its absolute path",
     "unix:///run/docker-2/docker.sock"),
    ("ssh with a password", ["docker_host: ssh://builder:secret@buildbox"], 6, "is not ssh://[USER@]HOST[:PORT]",
     "your ssh set-up"),
    ("ssh with a path", ["docker_host: ssh://buildbox/var/run"], 6, "is not ssh://[USER@]HOST[:PORT]", "ssh://builder@buildbox"),
    ("http", ["docker_host: http://buildbox:2375"], 6, "is not a Docker engine address builder reaches",
     "ssh://USER@HOST"),
    ("a bare host name", ["docker_host: buildbox"], 6, "is not a Docker engine address builder reaches", "unix:///PATH"),
    ("not a string", ["docker_host: [a]"], 6, "expected a string", None),
    ("tls without tcp", ["docker_host: ssh://buildbox", "docker_tls: certs"], 7, "docker_tls goes with a tcp:// docker_host",
     "needs no TLS files"),
    ("both host and context", ["docker_host: ssh://buildbox", "docker_context: box"], 7, "give docker_host or docker_context",
     "names its engine's address"),
    ("tls with a context", ["docker_context: box", "docker_tls: certs"], 7, "docker_tls goes with a tcp:// docker_host",
     "its own TLS files"),
    ("bad context name", ["docker_context: '-x'"], 6, "is not a docker context name", "docker context ls"),
    ("misspelt key", ["docker_hots: ssh://buildbox"], 6, "unknown key", "did you mean 'docker_host'?"),
]


@pytest.mark.parametrize(("lines", "line", "fragment", "hint"), [c[1:] for c in WRONG], ids=[c[0] for c in WRONG])
def test_a_wrong_engine_is_refused_with_the_file_the_key_and_what_to_do(
    lines: list[str], line: int, fragment: str, hint: str | None
) -> None:
    with pytest.raises(ConfigError) as caught:
        loads(matrix_text(*lines), Path("matrix.yaml"))
    assert caught.value.location == f"matrix.yaml:{line}", str(caught.value)
    assert fragment in caught.value.message, caught.value.message
    if hint is not None:
        assert hint in (caught.value.hint or ""), caught.value.hint
    assert caught.value.exit_code == 2


def test_a_vagrant_platform_has_no_engine() -> None:
    vagrant = ("  - name: vm\n    backend: vagrant\n    family: debian\n    machines: [b, r]\n    python: /usr/bin/python3\n"
               "    docker_host: ssh://buildbox\n")
    with pytest.raises(ConfigError) as caught:
        loads(matrix_text(other=vagrant), Path("matrix.yaml"))
    assert caught.value.location == "matrix.yaml:15"
    assert "docker_host is for docker platforms, not vagrant" in caught.value.message
    assert "where Vagrant runs" in (caught.value.hint or "")


def test_missing_tls_files_are_named_when_connecting(tmp_path: Path) -> None:
    from builder.machines import engine

    (tmp_path / "ca.pem").write_text("x")
    where = Engine(host="tcp://buildbox:2376", tls=tmp_path, location="matrix.yaml:6: platforms[0].docker_host")
    with pytest.raises(EngineError) as caught:
        engine.client(where)
    assert f"{tmp_path / 'cert.pem'}, {tmp_path / 'key.pem'}" in caught.value.message
    assert "(matrix.yaml:6: platforms[0].docker_host)" in caught.value.message
    assert "point docker_tls: at the folder" in (caught.value.hint or "")


def test_an_unknown_context_is_named() -> None:
    from builder.machines import engine

    with pytest.raises(EngineError) as caught:
        engine.client(Engine(context="no-such-context-here", location="matrix.yaml:6: platforms[0].docker_context"))
    assert "no-such-context-here" in caught.value.message and "matrix.yaml:6" in caught.value.message


def test_a_shell_reaches_the_platforms_engine() -> None:
    images = Images(build="sha256:b", runtime="sha256:r")
    local = loads(matrix_text("docker_host: unix:///run/d2/docker.sock"), Path("m.yaml")).platforms[0]
    argv = backend.DockerBackend(engine=object()).interactive(local, images, "build", {"/src": "/builder"}, {})  # type: ignore[arg-type]
    assert argv[:4] == ["docker", "--host", "unix:///run/d2/docker.sock", "run"]
    tls = loads(matrix_text("docker_host: tcp://box:2376", "docker_tls: /etc/box"), Path("m.yaml")).platforms[0]
    argv = backend.DockerBackend(engine=object()).interactive(tls, images, "build", {}, {})  # type: ignore[arg-type]
    assert argv[:10] == ["docker", "--host", "tcp://box:2376", "--tlsverify", "--tlscacert", "/etc/box/ca.pem",
                         "--tlscert", "/etc/box/cert.pem", "--tlskey", "/etc/box/key.pem"]
    default = loads(matrix_text(), Path("m.yaml")).platforms[0]
    assert backend.DockerBackend(engine=object()).interactive(default, images, "build", {}, {})[:2] == ["docker", "run"]  # type: ignore[arg-type]


def test_a_shell_with_this_machines_files_refuses_an_engine_elsewhere() -> None:
    remote = loads(matrix_text("docker_host: ssh://builder@buildbox"), Path("m.yaml")).platforms[0]
    with pytest.raises(EngineError) as caught:
        backend.DockerBackend(engine=object()).interactive(  # type: ignore[arg-type]
            remote, Images(build="b", runtime="r"), "build", {"/src": "/builder"}, {})
    assert "ssh://builder@buildbox" in caught.value.message and "m.yaml:6" in (caught.value.hint or "")


def test_each_engine_has_its_own_slots_and_the_engines_run_side_by_side(tmp_path: Path) -> None:
    """-j1 with two engines: one cell at a time on each, the two engines at the same time."""
    matrix = loads(matrix_text("docker_host: ssh://builder@buildbox"), tmp_path / "matrix.yaml")
    cells = plan.all_cells(matrix)
    assert len(cells) == 4
    run = pipeline.Run(matrix, cells, jobs=1, echo=lambda line: None, save_state=False)
    lock = threading.Lock()
    running: dict[str, int] = {}
    most: dict[str, int] = {}
    both = threading.Event()

    def work(cell: plan.Cell) -> StageResult:
        where = cell.platform.engine.label
        with lock:
            running[where] = running.get(where, 0) + 1
            most[where] = max(most.get(where, 0), running[where])
            if len([n for n in running.values() if n]) == 2:
                both.set()
        time.sleep(0.2)
        with lock:
            running[where] -= 1
        return StageResult(cell.id, "build", "passed")

    started = time.monotonic()
    pipeline._parallel(run, "build", cells, work)
    took = time.monotonic() - started
    assert most == {"ssh://builder@buildbox": 1, "the default Docker engine": 1}
    assert both.is_set()
    assert took < 0.7, took  # two engines × two cells × 0.2 s each: 0.4 s side by side, 0.8 s one after another
    assert all(run.results[c.id]["build"].ok for c in cells)


def test_one_engine_keeps_its_j_slots(tmp_path: Path) -> None:
    matrix = loads(matrix_text(), tmp_path / "matrix.yaml")
    cells = plan.all_cells(matrix)
    run = pipeline.Run(matrix, cells, jobs=3, echo=lambda line: None, save_state=False)
    lock = threading.Lock()
    count = [0, 0]

    def work(cell: plan.Cell) -> StageResult:
        with lock:
            count[0] += 1
            count[1] = max(count)
        time.sleep(0.2)
        with lock:
            count[0] -= 1
        return StageResult(cell.id, "build", "passed")

    pipeline._parallel(run, "build", cells, work)
    assert count[1] == 3


def test_clean_visits_every_engine_and_names_one_that_does_not_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    from builder.machines import engine, registry

    text = matrix_text("docker_host: ssh://builder@buildbox", other=(
        "  - name: debian13\n    family: debian\n    base: {debootstrap: trixie}\n    python: /usr/bin/python3\n"
        "    docker_host: unix:///run/gone/docker.sock\n"))
    platforms = loads(text, Path("matrix.yaml")).platforms
    cleaned: list[str] = []

    def client(where: Engine = engine.DEFAULT) -> object:
        if where.host == "unix:///run/gone/docker.sock":
            raise EngineError(f"the Docker engine at {where.host} ({where.location}) is not reachable", hint="start it")
        return where.label

    monkeypatch.setattr(engine, "client", client)
    monkeypatch.setattr(engine, "clients", lambda: [])
    monkeypatch.setattr(engine, "remove_containers", lambda made, pid=None: cleaned.append(made) or [f"guest-on-{made}"])
    with pytest.raises(EngineError) as caught:
        registry.clean(platforms=platforms)
    assert cleaned == ["the default Docker engine", "ssh://builder@buildbox"]  # both cleaned all the same
    assert "unix:///run/gone/docker.sock (matrix.yaml:15: platforms[2].docker_host)" in caught.value.message
    cleaned.clear()
    assert registry.clean(platforms=platforms[:2]) == ["guest-on-the default Docker engine", "guest-on-ssh://builder@buildbox"]

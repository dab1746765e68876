"""The operator's sequence around the switch, with the real host.py run on this machine through a
stand-in for the ssh connection (the real one is proven in tests/e2e/test_deploy.py)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from builder.deploy import roll
from builder.errors import DeployError
from builder.machines.base import Exec
from builder.machines.ssh import Destination
from builder.matrix.model import Batch, Hook, Target


class LocalConnection:
    """Runs "remote" commands here: the host's root is a temporary folder."""

    def __init__(self, dest: Destination) -> None:
        self.dest = dest

    def __enter__(self) -> LocalConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def run(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float | None = None,
            **_: object) -> Exec:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
        return Exec(done.returncode, done.stdout + done.stderr)

    def put(self, src: Path, dest: str) -> None:
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dest, dirs_exist_ok=True)
        else:
            shutil.copyfile(src, dest)


def make_target(root: Path, log: Path, failing: str = "") -> Target:
    def hook(name: str) -> Hook:
        fail = " && false" if name == failing else ""
        return Hook(f"echo {name} {{release}} >> {log}{fail}", "local" if name in ("out", "in") else "remote")

    return Target(
        name="t", platform="p", hosts=(Destination("h1"), Destination("h2"), Destination("h3")), root=str(root),
        python=sys.executable, app=root, requirements=(), hooks={n: hook(n) for n in ("out", "stop", "start", "smoke", "in")},
        batch=Batch(1), keep=5,
    )


def release(root: Path, name: str) -> None:
    (root / "releases" / name).mkdir(parents=True)
    (root / "releases" / name / "release.json").write_text(json.dumps({"release": name, "fingerprint": name}))


@pytest.fixture
def host_root(tmp_path: Path) -> Path:
    root = tmp_path / "srv"
    for name in ("v1", "v2"):
        release(root, name)
    return root


def host_for(target: Target) -> roll.Host:
    host = roll.Host(LocalConnection(Destination("h1")), target, lambda line: None)  # type: ignore[arg-type]
    host.install_script()
    return host


def test_hooks_run_in_order_around_the_switch(host_root: Path, tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    host = host_for(make_target(host_root, log))
    host.host_py("switch", "v1")
    roll.switch_with_hooks(host, "v2", "v1")
    assert log.read_text().split("\n")[:-1] == ["out v2", "stop v2", "start v2", "smoke v2", "in v2"]
    status = host.host_py("status")
    assert (status["current"], status["previous"], status["deployed"]) == ("v2", "v1", "v2")


def test_a_failed_smoke_test_switches_back_restarts_and_says_where(host_root: Path, tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    host = host_for(make_target(host_root, log, failing="smoke"))
    host.host_py("switch", "v1")
    with pytest.raises(DeployError) as error:
        roll.switch_with_hooks(host, "v2", "v1")
    assert "h1: step smoke failed after the switch to v2" in error.value.message
    assert (host_root / "current").resolve().name == "v1"
    lines = log.read_text().split("\n")[:-1]
    assert lines[:4] == ["out v2", "stop v2", "start v2", "smoke v2"]
    assert lines[4:7] == ["stop v2", "start v1", "smoke v1"]  # back on v1, whose smoke test fails too here
    assert "but then" in error.value.message


def test_a_failure_before_the_switch_leaves_current_and_restarts_the_service(host_root: Path, tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    host = host_for(make_target(host_root, log, failing="stop"))
    host.host_py("switch", "v1")
    with pytest.raises(DeployError, match="before the switch: current is still v1"):
        roll.switch_with_hooks(host, "v2", "v1")
    assert (host_root / "current").resolve().name == "v1"
    assert log.read_text().split("\n")[:-1] == ["out v2", "stop v2", "start v1", "in v1"]


def test_rollback_goes_to_the_previous_release(host_root: Path, tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    target = make_target(host_root, log)
    host = host_for(target)
    host.host_py("switch", "v1")
    host.host_py("switch", "v2")
    assert roll.rollback_host(host, None).state == "deployed"
    assert (host_root / "current").resolve().name == "v1"
    assert roll.rollback_host(host, "v1").state == "unchanged"
    with pytest.raises(DeployError, match="release v9 is not there"):
        roll.rollback_host(host, "v9")


def test_the_roll_stops_at_the_first_failed_host_and_names_the_rest(host_root: Path, tmp_path: Path) -> None:
    target = make_target(host_root, tmp_path / "hooks.log")
    seen = []

    def work(host: roll.Host) -> roll.Outcome:
        seen.append(host.dest.host)
        if host.dest.host == "h2":
            raise DeployError("h2: smoke failed")
        return roll.Outcome(host.dest, "deployed")

    with pytest.raises(DeployError, match=r"h2: smoke failed \(not started: h3\)"):
        roll.roll(target, work, lambda line: None, connect=LocalConnection)  # type: ignore[arg-type]
    assert seen == ["h1", "h2"]


@pytest.mark.parametrize(("size", "percent", "hosts", "batches"), [
    (1, False, 3, [1, 1, 1]), (2, False, 3, [2, 1]), (50, True, 4, [2, 2]), (50, True, 3, [1, 1, 1]), (100, True, 3, [3]),
])
def test_batches(size: int, percent: bool, hosts: int, batches: list[int]) -> None:
    pool = tuple(Destination(f"h{n}") for n in range(hosts))
    assert [len(b) for b in Batch(size, percent).split(pool)] == batches


def test_hook_substitution_quotes_for_the_local_shell() -> None:
    dest = Destination("web 1", user="deploy", port=2222)
    assert roll.substitute(Hook("lb out {host} {release}", "local"), dest, "v1", "/srv") == "lb out 'deploy@web 1:2222' v1"
    assert roll.substitute(Hook("x {root} {hostname}:{port}", "remote"), dest, "v1", "/srv") == "x /srv web 1:2222"

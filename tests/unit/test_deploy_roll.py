"""The operator's sequence around the switch, with the real host.py run on this machine through a
stand-in for the ssh connection (the real one is proven in tests/e2e/test_deploy.py)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from builder.deploy import roll
from builder.deploy.bundle import Bundle
from builder.deploy.roll import HookFailed
from builder.errors import DeployError, TransportError
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
            input: bytes | None = None, **_: object) -> Exec:
        done = subprocess.run(list(argv), capture_output=True, input=input, timeout=timeout, check=False)
        return Exec(done.returncode, (done.stdout + done.stderr).decode())

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
    return roll.Host(LocalConnection(Destination("h1")), target, lambda line: None)  # type: ignore[arg-type]


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

    with pytest.raises(DeployError) as error:
        roll.roll(target, work, lambda line: None, connect=LocalConnection)  # type: ignore[arg-type]
    assert seen == ["h1", "h2"]
    assert error.value.message.splitlines()[1:] == [
        "  done: h1 (switched)", "  failed: h2 (step connect): smoke failed", "  not started: h3"]


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


class Unreachable(LocalConnection):
    """A host whose sshd refuses: the connection is never made."""

    def __enter__(self) -> LocalConnection:
        if self.dest.host == "h2":
            raise TransportError(f"cannot connect to {self.dest}: Connection refused")
        return self


@pytest.mark.parametrize(("batch", "done", "not_started"), [(1, ["h1"], "h3"), (2, [], "h3"), (3, ["h1", "h3"], "none")])
def test_one_rule_for_every_batch_size_a_refused_connection(host_root: Path, tmp_path: Path, batch: int,
                                                           done: list[str], not_started: str) -> None:
    target = replace(make_target(host_root, tmp_path / "hooks.log"), batch=Batch(batch))
    order = {"h1": 0.0, "h3": 0.0}

    def work(host: roll.Host) -> roll.Outcome:
        if batch == 2 and host.dest.host == "h1":
            host.step = "prepare"
            raise DeployError("h1: prepare failed: no space left on device")
        order[host.dest.host] = 1
        return roll.Outcome(host.dest, "deployed")

    with pytest.raises(TransportError if batch != 2 else DeployError) as error:
        roll.roll(target, work, lambda line: None, connect=Unreachable)  # type: ignore[arg-type]
    lines = error.value.message.splitlines()[1:]
    assert lines[0] == "  done: " + (", ".join(f"{h} (switched)" for h in done) or "none")
    assert "  failed: h2 (connection connect): cannot connect to h2: Connection refused" in lines
    assert lines[-1] == f"  not started: {not_started}"
    if batch == 2:  # a step failed on h1 as well: that is what the exit status says
        assert error.value.exit_code == 10 and "  failed: h1 (step prepare): prepare failed: no space left on device" in lines
    else:
        assert error.value.exit_code == 8


def test_a_connection_lost_during_stop_leaves_the_host_out_and_says_so(host_root: Path, tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    target = make_target(host_root, log)
    host = host_for(target)
    host.host_py("switch", "v1")
    real = host.hook

    def hook(name: str, release: str) -> None:
        real(name, release)  # type: ignore[arg-type]
        if name == "stop":
            raise TransportError("the connection to h1 was lost while running: sh -c ...")

    host.hook = hook  # type: ignore[method-assign]
    with pytest.raises(TransportError):
        roll.switch_with_hooks(host, "v2", "v1")
    assert host.left_out == "left out of the balancer: connection lost during stop"
    assert log.read_text().split()[::2] == ["out", "stop"]  # neither start nor in
    failure = roll.Failure(host.dest, host.step, TransportError("h1: lost"), host.left_out)
    assert roll.summary([], [failure], [])[-1] == "h1: left out of the balancer: connection lost during stop"


def test_deploying_an_older_complete_release_is_a_downgrade(tmp_path: Path) -> None:
    root = tmp_path / "srv"
    for name, created in (("v1", "2026-01-01T00:00:00Z"), ("v2", "2026-01-02T00:00:00Z")):
        (root / "releases" / name).mkdir(parents=True)
        (root / "releases" / name / "release.json").write_text(json.dumps({"release": name, "fingerprint": "f", "created": created}))
    target = make_target(root, tmp_path / "hooks.log")
    host = host_for(target)
    host.host_py("switch", "v1")
    host.host_py("switch", "v2")
    bundle = Bundle("v1", {"fingerprint": "f", "release": "v1"}, {}, ())
    with pytest.raises(DeployError, match="v1 is older than the current v2") as error:
        roll.deploy_host(host, bundle)
    assert "--allow-downgrade" in (error.value.hint or "") and "rollback t --to v1" in (error.value.hint or "")
    assert (root / "current").resolve().name == "v2"


def test_a_first_switch_says_so_in_words(host_root: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    target = make_target(host_root, tmp_path / "hooks.log")
    host = roll.Host(LocalConnection(Destination("h1")), target, lines.append)  # type: ignore[arg-type]
    roll.switch_with_hooks(host, "v1", None)
    assert "[h1] current: v1 (the first release on this host)" in lines and not any("None" in line for line in lines)


def test_a_local_hook_goes_through_the_command_funnel(host_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    real = roll.runner.run

    def spy(argv: Sequence[str], **kwargs: object) -> str:
        calls.append(list(argv))
        return real(argv, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(roll.runner, "run", spy)
    host = host_for(make_target(host_root, tmp_path / "hooks.log", failing="out"))
    with pytest.raises(HookFailed, match="out: exit 1"):
        host.hook("out", "v2")
    assert calls and calls[0][:2] == ["sh", "-c"]

"""The operator's side of deploy, rollback and releases: hosts in batches over ssh, hooks around
host.py's atomic switch, and a roll that stops at the first host that fails.

Per host: copy host.py; ask its state; copy only the files its cache lacks (host.py verifies
each on arrival); prepare the release (nothing of the service is touched yet, so a failure
here leaves `current` as it was); then out of the balancer, stop, switch, start, smoke test,
back in. A failure after the switch switches back, restarts and stops the roll. Every state a
kill leaves is one a rerun finishes: `current` only ever points at a complete release, and a
host counts as done only once host.py has recorded the whole sequence.
"""
from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BuilderError, DeployError
from ..machines.ssh import Connection, Destination
from ..matrix.model import Hook, HookName, Target
from .bundle import HOST_SCRIPT, Bundle

RESULT_MARK = "@@builder-host-result@@ "
HOOK_TIMEOUT = 600.0
Echo = Callable[[str], None]


@dataclass
class Outcome:
    host: Destination
    state: str  # "deployed", "unchanged", "failed"
    detail: str = ""


class Host:
    """One host during a roll: its connection, its root, and host.py's answers."""

    def __init__(self, conn: Connection, target: Target, echo: Echo) -> None:
        self.conn = conn
        self.target = target
        self.dest = conn.dest
        self.echo = echo
        self.tools = f"{target.root}/.builder"

    def say(self, text: str) -> None:
        self.echo(f"[{self.dest}] {text}")

    def install_script(self) -> None:
        self.conn.put(HOST_SCRIPT, f"{self.tools}/host.py")

    def host_py(self, step: str, *args: str) -> dict[str, Any]:
        argv = [self.target.python, f"{self.tools}/host.py", step, self.target.root, *args]
        done = self.conn.run(argv, timeout=1800)
        result = None
        for line in done.output.splitlines():
            if line.startswith(RESULT_MARK):
                result = json.loads(line[len(RESULT_MARK):])
        if result is None:
            tail = " | ".join(done.output.strip().splitlines()[-3:])
            raise DeployError(f"{self.dest}: host.py {step} gave no answer (exit {done.returncode}): {tail}",
                              hint=f"is {self.target.python} the Python on that host? set python: in the target")
        if not result.get("ok"):
            raise DeployError(f"{self.dest}: {step} failed: {result.get('error')}")
        return result

    def hook(self, name: HookName, release: str) -> None:
        hook = self.target.hooks.get(name)
        if hook is None:
            return
        command = substitute(hook, self.dest, release, self.target.root)
        self.say(f"{name}: {command}" + (" (here)" if hook.where == "local" else ""))
        if hook.where == "remote":
            done = self.conn.run(["sh", "-c", command], timeout=HOOK_TIMEOUT)
            code, output, timed_out = done.returncode, done.output, done.timed_out
        else:
            try:
                local = subprocess.run(["sh", "-c", command], capture_output=True, text=True,
                                       timeout=HOOK_TIMEOUT, check=False)
                code, output, timed_out = local.returncode, local.stdout + local.stderr, False
            except subprocess.TimeoutExpired:
                code, output, timed_out = -1, "", True
        if code != 0 or timed_out:
            why = f"timed out after {HOOK_TIMEOUT:.0f} s" if timed_out else f"exit {code}"
            tail = " | ".join(output.strip().splitlines()[-3:])
            raise HookFailed(name, f"{why}{': ' + tail if tail else ''}")

    def send(self, bundle: Bundle, cached: dict[str, str]) -> list[str]:
        """Copy what the host's cache lacks, in one tar stream; host.py verifies it."""
        missing = {sha: path for sha, path in bundle.files.items() if sha not in cached}
        if missing:
            with tempfile.TemporaryDirectory(prefix="builder-deploy-") as staging:
                for sha, path in missing.items():
                    (Path(staging) / sha).mkdir()
                    shutil.copyfile(path, Path(staging) / sha / path.name)
                self.conn.put(Path(staging), f"{self.target.root}/cache/.incoming")
            self.host_py("receive")
        return sorted(path.name for path in missing.values())


class HookFailed(Exception):
    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"{step}: {detail}")
        self.step = step
        self.detail = detail


def substitute(hook: Hook, dest: Destination, release: str, root: str) -> str:
    values = {"host": str(dest), "hostname": dest.host, "port": str(dest.port or 22), "release": release,
              "root": root}
    command = hook.command
    for key, value in values.items():
        command = command.replace("{" + key + "}", shlex.quote(value) if hook.where == "local" else value)
    return command


# -- the per-host sequences ---------------------------------------------------------------------


def deploy_host(host: Host, bundle: Bundle) -> Outcome:
    release = bundle.release
    host.install_script()
    status = host.host_py("status")
    known = {r["name"]: r for r in status["releases"]}
    if release in known and known[release]["complete"] and known[release]["fingerprint"] != bundle.fingerprint:
        raise DeployError(f"{host.dest}: release {release} already exists there with other contents",
                          hint="give this deploy a new release name (--release)")
    if status["current"] == release and status["deployed"] == release:
        host.say(f"{release} is already current: nothing to do")
        return Outcome(host.dest, "unchanged")
    copied = host.send(bundle, status["cached"])
    host.say(f"copied {len(copied)} file(s): {', '.join(copied) or 'none, the cache has them all'}")
    with tempfile.NamedTemporaryFile(suffix=".json") as plan:
        plan.write(bundle.plan_bytes())
        plan.flush()
        host.conn.put(Path(plan.name), f"{host.tools}/plan-{release}.json")
    prepared = host.host_py("prepare", f"{host.tools}/plan-{release}.json")
    host.say(f"release {release}: {prepared['state']}" + (f" in {prepared['seconds']} s" if "seconds" in prepared else ""))
    # After a kill between the switch and the end, current may already be the release: then
    # what to go back to is what it was switched from.
    before = status["previous"] if status["current"] == release else status["current"]
    switch_with_hooks(host, release, before)
    host.host_py("prune", str(host.target.keep))
    return Outcome(host.dest, "deployed")


def switch_with_hooks(host: Host, release: str, before: str | None) -> None:
    """out, stop, switch, start, smoke, in, done: a failure before the switch leaves current as it
    was (the service is started again and put back); after it, current goes back to `before`."""
    done: list[str] = []
    try:
        for step in ("out", "stop"):
            done.append(step)  # attempted: a stop that failed half-way still gets a start
            host.hook(step, release)
    except HookFailed as failed:
        restore_service(host, before or release, done)
        raise DeployError(f"{host.dest}: {failed} (before the switch: current is still {before})",
                          hint="fix the hook or the host, then run the same command again") from None
    switched = host.host_py("switch", release)
    host.say(f"current: {switched['from']} -> {release}")
    try:
        host.hook("start", release)
        host.hook("smoke", release)
    except HookFailed as failed:
        if before is None:
            raise DeployError(f"{host.dest}: {failed}; there is no earlier release to go back to",
                              hint="fix the release and deploy again") from None
        host.say(f"{failed.step} failed: switching back to {before}")
        back = "switched back to " + before
        try:
            host.hook("stop", release)
            host.host_py("switch", before)
            host.hook("start", before)
            host.hook("smoke", before)
            host.hook("in", before)
            host.host_py("done", before)
            back += ", restarted and put back"
        except (HookFailed, DeployError) as again:
            back += f", but then {again}"
        raise DeployError(f"{host.dest}: step {failed.step} failed after the switch to {release}: {failed.detail}; "
                          f"{back}. The roll stopped here.",
                          hint="the other hosts are untouched; fix the release and deploy again") from None
    host.hook("in", release)
    host.host_py("done", release)


def restore_service(host: Host, release: str, done: Sequence[str]) -> None:
    """Undo what ran before a failure: start again what was stopped, put back what was taken out."""
    for step in ("start", "in"):
        if (step == "start" and "stop" in done) or (step == "in" and "out" in done):
            try:
                host.hook(step, release)
            except HookFailed as failed:
                host.say(f"while restoring: {failed}")


def rollback_host(host: Host, to: str | None) -> Outcome:
    host.install_script()
    status = host.host_py("status")
    wanted = to or status["previous"]
    if wanted is None:
        raise DeployError(f"{host.dest}: no previous release to roll back to", hint="name one with --to")
    complete = [r["name"] for r in status["releases"] if r["complete"]]
    if wanted not in complete:
        raise DeployError(f"{host.dest}: release {wanted} is not there (complete: {', '.join(complete) or 'none'})",
                          hint="deploy it with `python -m builder deploy TARGET --release NAME`")
    if status["current"] == wanted and status["deployed"] == wanted:
        host.say(f"{wanted} is already current")
        return Outcome(host.dest, "unchanged")
    before = status["current"] if status["current"] != wanted else status["previous"]
    switch_with_hooks(host, wanted, before)
    return Outcome(host.dest, "deployed", wanted)


# -- rolls over the pool ------------------------------------------------------------------------


def roll(target: Target, work: Callable[[Host], Outcome], echo: Echo, *, connect: type[Connection] = Connection) -> list[Outcome]:
    """Batch by batch; within a batch hosts go at once. The next batch starts only when every
    host of this one passed; the first failure stops the roll."""
    outcomes: list[Outcome] = []
    batches = target.batch.split(target.hosts)
    for number, batch in enumerate(batches, 1):
        echo(f"batch {number}/{len(batches)}: {', '.join(str(h) for h in batch)}")

        def one(dest: Destination) -> Outcome:
            with connect(dest) as conn:
                return work(Host(conn, target, echo))

        if len(batch) == 1:
            results: list[Outcome | BaseException] = []
            try:
                results.append(one(batch[0]))
            except DeployError as exc:
                results.append(exc)
        else:
            with ThreadPoolExecutor(max_workers=len(batch)) as pool:
                futures = [pool.submit(one, dest) for dest in batch]
                results = [f.exception() or f.result() for f in futures]
        errors = [r for r in results if isinstance(r, BaseException)]
        outcomes += [r for r in results if isinstance(r, Outcome)]
        if errors:
            rest = [str(h) for later in batches[number:] for h in later]
            message = "; ".join(str(e) if not isinstance(e, DeployError) else e.message for e in errors)
            raise DeployError(message + (f" (not started: {', '.join(rest)})" if rest else ""),
                              hint=next((e.hint for e in errors if isinstance(e, DeployError) and e.hint), None))
    return outcomes


def dry_run(target: Target, bundle: Bundle | None, release: str, echo: Echo) -> None:
    """What a deploy (bundle given) or rollback would do, without connecting anywhere."""
    batches = target.batch.split(target.hosts)
    echo(f"target {target.name}: platform {target.platform}, {len(target.hosts)} host(s), batch {target.batch}, "
         f"root {target.root}, python {target.python}")
    for number, batch in enumerate(batches, 1):
        echo(f"batch {number}: {', '.join(str(h) for h in batch)}")
    if bundle is not None:
        echo(f"release {release} (fingerprint {bundle.fingerprint[:16]}): files each host's cache lacks are copied:")
        for sha, path in sorted(bundle.files.items(), key=lambda item: item[1].name):
            echo(f"  {path.name}  {path.stat().st_size} bytes  sha256 {sha[:16]}")
    for dest in target.hosts:
        conn = Connection(dest)
        echo(f"on {dest}:")
        steps: list[str] = []
        script = f"{target.root}/.builder/host.py"
        if bundle is not None:
            steps += [f"copy {HOST_SCRIPT.name} to {script}", shlex.join(conn.argv([target.python, script, "status", target.root])),
                      f"copy the missing files to {target.root}/cache/.incoming/",
                      shlex.join(conn.argv([target.python, script, "receive", target.root])),
                      shlex.join(conn.argv([target.python, script, "prepare", target.root, f"{target.root}/.builder/plan-{release}.json"]))]
        for name in ("out", "stop", "switch", "start", "smoke", "in"):
            if name == "switch":
                steps.append(shlex.join(conn.argv([target.python, script, "switch", target.root, release])))
            elif name in target.hooks:
                hook = target.hooks[name]  # type: ignore[index]
                command = substitute(hook, dest, release, target.root)
                shown = command + "  (here)" if hook.where == "local" else shlex.join(conn.argv(["sh", "-c", command]))
                steps.append(f"{name}: {shown}")
        if bundle is not None:
            steps.append(shlex.join(conn.argv([target.python, script, "prune", target.root, str(target.keep)])))
        for step in steps:
            echo(f"  {step}")


def releases(target: Target, echo: Echo, *, connect: type[Connection] = Connection) -> list[dict[str, Any]]:
    """Each host's releases and current, as host.py reports them."""
    found = []
    unreachable = []
    for dest in target.hosts:
        try:
            with connect(dest) as conn:
                host = Host(conn, target, echo)
                host.install_script()
                status = host.host_py("status")
        except BuilderError as exc:  # one host down must not hide the others' state
            echo(f"{dest}: cannot tell: {exc.message}")
            unreachable.append(str(dest))
            continue
        found.append({"host": str(dest), **status})
        marks = []
        for release in status["releases"]:
            flags = [f for f, on in (("current", release["name"] == status["current"]),
                                     ("previous", release["name"] == status["previous"]),
                                     ("incomplete", not release["complete"])) if on]
            marks.append(release["name"] + (f" ({', '.join(flags)})" if flags else ""))
        echo(f"{dest}: current {status['current'] or '-'}; releases: {', '.join(marks) or 'none'}")
    if unreachable:
        raise DeployError(f"could not read the releases of {', '.join(unreachable)}", hint="check that they are up")
    return found

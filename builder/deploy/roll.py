"""The operator's side of deploy, rollback and releases: hosts in batches over ssh, hooks around
host.py's atomic switch, and a roll that stops at the first host that fails.

Per host: ask its state (host.py runs from a pipe, so asking writes nothing); re-hash what its
cache holds of the release and drop what changed; copy only the files its cache lacks (host.py
verifies each on arrival); prepare the release (nothing of the service is touched yet, so a
failure here leaves `current` as it was); then out of the balancer, stop, switch, start, smoke
test, back in. A failure after the switch switches back, restarts and stops the roll. Every
state a kill leaves is one a rerun finishes: `current` only ever points at a complete release,
and a host counts as done only once host.py has recorded the whole sequence.

One rule for the whole roll, whatever the batch size: each host ends done, failed (at a step,
for a reason) or not started, and the summary lists all three. The exit status says what failed:
8 (TransportError) when every failure was a connection that could not be made or was lost, 10
(DeployError) when a step failed on a host.
"""
from __future__ import annotations

import json
import shlex
import shutil
import tempfile
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import runner
from ..errors import BuilderError, CommandError, DeployError, HostMismatch, TransportError
from ..machines.ssh import Connection, Destination
from ..matrix.model import Hook, HookName, Target
from .bundle import HOST_SCRIPT, Bundle

RESULT_MARK = "@@builder-host-result@@ "
HOOK_TIMEOUT = 600.0
Echo = Callable[[str], None]


@dataclass
class Outcome:
    host: Destination
    state: str  # "deployed", "unchanged"
    detail: str = ""


@dataclass
class Failure:
    host: Destination
    step: str
    error: BuilderError
    left_out: str | None = None  # why the host stays out of the balancer, if it does

    @property
    def lost(self) -> bool:
        return isinstance(self.error, TransportError)

    @property
    def reason(self) -> str:
        text = self.error.message
        prefix = f"{self.host}: "
        return text[len(prefix):] if text.startswith(prefix) else text


class Host:
    """One host during a roll: its connection, its root, and host.py's answers."""

    def __init__(self, conn: Connection, target: Target, echo: Echo) -> None:
        self.conn = conn
        self.target = target
        self.dest = conn.dest
        self.echo = echo
        self.tools = f"{target.root}/.builder"
        self.step = "connect"
        self.left_out: str | None = None

    def say(self, text: str) -> None:
        self.echo(f"[{self.dest}] {text}")

    def host_py(self, step: str, *args: str) -> dict[str, Any]:
        """Run host.py STEP from a pipe: the script is never stored on the host, so what runs is
        always this builder's copy, and asking a read-only host writes nothing."""
        self.step = step
        argv = host_py_argv(self.target, step, *args)
        done = self.conn.run(argv, input=HOST_SCRIPT.read_bytes(), timeout=1800)
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

    def put(self, src: Path, dest: str) -> None:
        """A copy the host refused (read-only, full, not allowed) is that host's step failing."""
        try:
            self.conn.put(src, dest)
        except CommandError as exc:
            lines = [line.strip() for line in exc.output.strip().splitlines() if line.strip()]
            why = next((w for w in ("Read-only file system", "No space left on device", "Permission denied")
                        if w in exc.output), None)
            detail = why.lower() if why else (lines[-1] if lines else f"exit {exc.returncode}")
            raise DeployError(f"{self.dest}: copying to {dest} failed ({detail})",
                              hint="free or fix that file system on the host, then run the same command again") from None

    def hook(self, name: HookName, release: str) -> None:
        hook = self.target.hooks.get(name)
        self.step = name
        if hook is None:
            return
        command = substitute(hook, self.dest, release, self.target.root)
        self.say(f"{name}: {command}" + (" (here)" if hook.where == "local" else ""))
        if hook.where == "remote":
            done = self.conn.run(["sh", "-c", command], timeout=HOOK_TIMEOUT)
            code, output, timed_out = done.returncode, done.output, done.timed_out
        else:
            try:
                runner.run(["sh", "-c", command], timeout=HOOK_TIMEOUT)
                code, output, timed_out = 0, "", False
            except CommandError as exc:
                code, output, timed_out = exc.returncode, exc.output, exc.returncode == -9
        if code != 0 or timed_out:
            why = f"timed out after {HOOK_TIMEOUT:.0f} s" if timed_out else f"exit {code}"
            tail = " | ".join(output.strip().splitlines()[-3:])
            raise HookFailed(name, f"{why}{': ' + tail if tail else ''}")

    def check_writable(self, status: dict[str, Any]) -> None:
        problem = status.get("unwritable")
        if problem:
            self.step = "status"
            raise DeployError(f"{self.dest}: {problem['path']} is not writable on {self.dest} ({problem['why']})",
                              hint="make the release root writable for the deploy user (remount it read-write), "
                                   "or give the target another root:")

    def send(self, bundle: Bundle, cached: dict[str, str]) -> list[str]:
        """Re-hash what the cache holds of the release (a changed file is dropped and copied again,
        in this run), then copy what it lacks, in one tar stream, into an arrival folder of this
        run's own; host.py verifies it."""
        held = sorted(sha for sha in bundle.files if sha in cached)
        if held:
            for bad in self.host_py("verify", *held)["corrupt"]:
                self.say(f"the cached {bad['file']} had sha256 {bad['actual']}, expected {bad['sha256']}: "
                         "removed it, copying it again")
                cached = {sha: name for sha, name in cached.items() if sha != bad["sha256"]}
        missing = {sha: path for sha, path in bundle.files.items() if sha not in cached}
        if missing:
            self.step = "copy"
            arrival = f"run-{uuid.uuid4().hex[:12]}"
            with tempfile.TemporaryDirectory(prefix="builder-deploy-") as staging:
                for sha, path in missing.items():
                    (Path(staging) / sha).mkdir()
                    shutil.copyfile(path, Path(staging) / sha / path.name)
                self.put(Path(staging), f"{self.target.root}/cache/.incoming/{arrival}")
            self.host_py("receive", arrival)
        return sorted(path.name for path in missing.values())


def host_py_argv(target: Target, step: str, *args: str) -> list[str]:
    return [target.python, "-", step, target.root, *args]


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


def trust_key(host: Host, bundle: Bundle, replace: bool) -> None:
    """Put the key that signs the manifests on the host, once: host.py refuses another key than
    the one it trusts unless `replace` (--trust-new-key)."""
    if bundle.public_key is None:
        return
    host.step = "trust"
    offered = f"{host.tools}/offered-{uuid.uuid4().hex[:12]}.pub.pem"
    host.put(bundle.public_key, offered)
    trusted = host.host_py("trust", offered, *(["replace"] if replace else []))
    if trusted["state"] != "already trusted":
        host.say(f"trusted key sha256 {trusted['trusted'][:16]}: {trusted['state']}")


def deploy_host(host: Host, bundle: Bundle, *, allow_downgrade: bool = False,
                doctor: dict[str, Any] | None = None, trust_new_key: bool = False) -> Outcome:
    """`doctor`: what the doctor said of this host (or that it was skipped), for release.json."""
    release = bundle.release
    status = host.host_py("status")
    known = {r["name"]: r for r in status["releases"]}
    if release in known and known[release]["complete"] and known[release]["fingerprint"] != bundle.fingerprint:
        raise DeployError(f"{host.dest}: release {release} already exists there with other contents",
                          hint="give this deploy a new release name (--release)")
    stale = (status.get("stale") or {}).get(release)
    if stale and status["current"] == release:
        host.step = "status"
        raise DeployError(f"{host.dest}: release {release} is current there but stale: {stale}",
                          hint="deploy the application under a new release name: it is made afresh with this interpreter")
    if stale:
        host.say(f"release {release} is stale ({stale}): making it afresh")
    if status["current"] == release and status["deployed"] == release:
        host.say(f"{release} is already current: nothing to do")
        return Outcome(host.dest, "unchanged")
    current = known.get(status["current"] or "")
    if (not allow_downgrade and release in known and known[release]["complete"] and current is not None
            and current["name"] != release and (known[release]["created"] or "") < (current["created"] or "")):
        host.step = "status"
        raise DeployError(f"{host.dest}: {release} is older than the current {current['name']} "
                          f"(made {known[release]['created']}, before {current['created']}): that is a downgrade",
                          hint=f"to go back, run `python -m builder rollback {host.target.name} --to {release}`; "
                               "to deploy it anyway, add --allow-downgrade")
    host.check_writable(status)
    trust_key(host, bundle, trust_new_key)
    copied = host.send(bundle, status["cached"])
    host.say(f"copied {len(copied)} file(s): {', '.join(copied) or 'none, the cache has them all'}")
    host.step = "copy"
    with tempfile.NamedTemporaryFile(suffix=".json") as plan:
        plan.write(bundle.plan_bytes(doctor))
        plan.flush()
        host.put(Path(plan.name), f"{host.tools}/plan-{release}.json")
    prepared = host.host_py("prepare", f"{host.tools}/plan-{release}.json")
    for repaired in prepared.get("repaired") or []:
        host.say(repaired)
    host.say(f"release {release}: {prepared['state']}" + (f" in {prepared['seconds']} s" if "seconds" in prepared else ""))
    # After a kill between the switch and the end, current may already be the release: then
    # what to go back to is what it was switched from.
    before = status["previous"] if status["current"] == release else status["current"]
    switch_with_hooks(host, release, before)
    host.host_py("prune", str(host.target.keep))
    return Outcome(host.dest, "deployed")


def switch_with_hooks(host: Host, release: str, before: str | None) -> None:
    """out, stop, switch, start, smoke, in, done: a failure before the switch leaves current as it
    was (the service is started again and put back); after it, current goes back to `before`.

    A connection lost on the way is different: the host's state is not known (stopped or not,
    switched or not), so nothing more is run on it, and it is not put back in the balancer: a
    host in an unknown state must not get traffic. The summary says it was left out."""
    done: list[str] = []
    try:
        _switch_with_hooks(host, release, before, done)
    except TransportError:
        if "out" in done and host.target.hooks.get("out") is not None:
            host.left_out = f"left out of the balancer: connection lost during {host.step}"
        raise


def _switch_with_hooks(host: Host, release: str, before: str | None, done: list[str]) -> None:
    try:
        for step in ("out", "stop"):
            done.append(step)  # attempted: a stop that failed half-way still gets a start
            host.hook(step, release)
    except HookFailed as failed:
        restore_service(host, before or release, done)
        host.step = failed.step
        raise DeployError(f"{host.dest}: {failed} (before the switch: current is still {before})",
                          hint="fix the hook or the host, then run the same command again") from None
    switched = host.host_py("switch", release)
    host.say(f"current: {switched['from']} -> {release}" if switched["from"]
             else f"current: {release} (the first release on this host)")
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
        except TransportError:
            back += ", but then the connection was lost"
            host.left_out = f"left out of the balancer: connection lost while switching back to {before}"
        host.step = failed.step
        raise DeployError(f"{host.dest}: step {failed.step} failed after the switch to {release}: {failed.detail}; "
                          f"{back}. The roll stopped here.",
                          hint="the other hosts are untouched; fix the release and deploy again") from None
    done.append("in")
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
    status = host.host_py("status")
    wanted = to or status["previous"]
    if wanted is None:
        why = status.get("previous_unknown") or "no previous release to roll back to"
        raise DeployError(f"{host.dest}: {why}", hint="name the release with --to (see `releases`)")
    complete = [r["name"] for r in status["releases"] if r["complete"]]
    if wanted not in complete:
        raise DeployError(f"{host.dest}: release {wanted} is not there (complete: {', '.join(complete) or 'none'})",
                          hint="deploy it with `python -m builder deploy TARGET --release NAME`")
    if status["current"] == wanted and status["deployed"] == wanted:
        host.say(f"{wanted} is already current")
        return Outcome(host.dest, "unchanged")
    stale = (status.get("stale") or {}).get(wanted)
    if stale:
        raise DeployError(f"{host.dest}: release {wanted} is stale: {stale}; rollback does not switch to it",
                          hint=f"deploy it again (`python -m builder deploy {host.target.name} --release {wanted}` with "
                               "the same application) to make it afresh, or roll back to another release")
    host.check_writable(status)
    before = status["current"] if status["current"] != wanted else status["previous"]
    switch_with_hooks(host, wanted, before)
    return Outcome(host.dest, "deployed", wanted)


# -- rolls over the pool ------------------------------------------------------------------------


def roll(target: Target, work: Callable[[Host], Outcome], echo: Echo, *, connect: type[Connection] = Connection,
         what: str = "deploy", check: Callable[[Host], object] | None = None) -> list[Outcome]:
    """Batch by batch; within a batch hosts go at once. The next batch starts only when every
    host of this one passed; the first failure stops the roll, and the error's message is the
    summary: done, failed (host, step, reason), not started.

    `check` (the doctor) runs first on every host of a batch, before anything is copied to any
    of them: one host refused stops the roll with none of its batch touched."""
    outcomes: list[Outcome] = []
    failures: list[Failure] = []
    not_started: list[Destination] = []
    batches = target.batch.split(target.hosts)

    def one(dest: Destination, job: Callable[[Host], Any]) -> Any:
        host: Host | None = None
        try:
            with connect(dest) as conn:
                host = Host(conn, target, echo)
                return job(host)
        except BuilderError as exc:
            return Failure(dest, host.step if host else "connect", exc, host.left_out if host else None)

    def each(batch: Sequence[Destination], job: Callable[[Host], Any]) -> list[Any]:
        if len(batch) == 1:  # in this thread: Ctrl-C stops it at once
            return [one(batch[0], job)]
        with ThreadPoolExecutor(max_workers=len(batch)) as pool:
            return list(pool.map(lambda dest: one(dest, job), batch))

    for number, batch in enumerate(batches, 1):
        echo(f"batch {number}/{len(batches)}: {', '.join(str(h) for h in batch)}")
        if check is not None:
            checked = [r for r in each(batch, check) if isinstance(r, Failure)]
            # A host that could not be reached fails as it would have without the check; one
            # the check refused stops the batch before anything is copied to any of its hosts.
            failures += checked
            if any(not f.lost for f in checked):
                not_started = [h for h in batch if h not in {f.host for f in checked}]
                not_started += [h for later in batches[number:] for h in later]
                break
            batch = tuple(h for h in batch if h not in {f.host for f in checked})
        results = each(batch, work) if batch else []
        outcomes += [r for r in results if isinstance(r, Outcome)]
        failures += [r for r in results if isinstance(r, Failure)]
        if failures:
            not_started = [h for later in batches[number:] for h in later]
            break
    if failures:
        lines = summary(outcomes, failures, not_started)
        error: type[BuilderError] = TransportError if all(f.lost for f in failures) else DeployError
        if any(isinstance(f.error, HostMismatch) for f in failures) and all(
                f.lost or isinstance(f.error, HostMismatch) for f in failures):
            error = HostMismatch  # the doctor refused: its own exit status
        what_failed = {TransportError: "could not reach", HostMismatch: "refused"}.get(error, "failed on")
        hint = next((f.error.hint for f in failures if f.error.hint), None)
        raise error(f"the {what} of {target.name} stopped: it {what_failed} "
                    f"{', '.join(str(f.host) for f in failures)}\n" + "\n".join("  " + line for line in lines), hint=hint)
    return outcomes


def summary(outcomes: Sequence[Outcome], failures: Sequence[Failure], not_started: Sequence[Destination]) -> list[str]:
    states = {"deployed": "switched", "unchanged": "already current"}
    lines = ["done: " + (", ".join(f"{o.host} ({states.get(o.state, o.state)})" for o in outcomes) or "none")]
    for failure in failures:
        kind = "connection" if failure.lost else "step"
        lines.append(f"failed: {failure.host} ({kind} {failure.step}): {failure.reason}")
    lines.append("not started: " + (", ".join(str(h) for h in not_started) or "none"))
    lines += [f"{f.host}: {f.left_out}" for f in failures if f.left_out]
    return lines


def dry_run(target: Target, bundle: Bundle | None, release: str | None, echo: Echo,
            doctor: Sequence[str] | None = None) -> None:
    """What a deploy (bundle given) or rollback would do, without connecting anywhere. A rollback
    without --to goes to each host's previous release, which only the host knows."""
    batches = target.batch.split(target.hosts)
    echo(f"target {target.name}: platform {target.platform}, {len(target.hosts)} host(s), batch {target.batch}, "
         f"root {target.root}, python {target.python}")
    for number, batch in enumerate(batches, 1):
        echo(f"batch {number}: {', '.join(str(h) for h in batch)}")
    if bundle is not None:
        echo(f"release {release} (fingerprint {bundle.fingerprint[:16]}): files each host's cache lacks are copied:")
        for sha, path in sorted(bundle.files.items(), key=lambda item: item[1].name):
            echo(f"  {path.name}  {path.stat().st_size} bytes  sha256 {sha[:16]}")
    unknown = "<the host's previous release>"
    name = release or unknown
    for dest in target.hosts:
        conn = Connection(dest)
        echo(f"on {dest}:")

        def host_py(step: str, *args: str, conn: Connection = conn) -> str:
            return shlex.join(conn.argv(host_py_argv(target, step, *args))) + f"  < {HOST_SCRIPT}"

        steps = [host_py("fingerprint", *doctor) + "  (the doctor, first on every host of the batch)"] if doctor is not None else []
        steps.append(host_py("status"))
        if bundle is not None and bundle.public_key is not None:
            steps += [f"copy {bundle.public_key} to {target.root}/.builder/offered-ID.pub.pem",
                      host_py("trust", f"{target.root}/.builder/offered-ID.pub.pem")]
        if bundle is not None:
            steps += [host_py("verify", "SHA256..."),
                      f"copy the missing files to {target.root}/cache/.incoming/run-ID/",
                      host_py("receive", "run-ID"),
                      f"copy the plan to {target.root}/.builder/plan-{release}.json",
                      host_py("prepare", f"{target.root}/.builder/plan-{release}.json")]
        for step in ("out", "stop", "switch", "start", "smoke", "in", "done"):
            if step in ("switch", "done"):
                steps.append(host_py(step, name) if release else
                             host_py(step, "RELEASE") + f"  (RELEASE: {unknown[1:-1]}, read there)")
            elif step in target.hooks:
                hook = target.hooks[step]  # type: ignore[index]
                command = substitute(hook, dest, name, target.root)
                shown = command + "  (here)" if hook.where == "local" else shlex.join(conn.argv(["sh", "-c", command]))
                steps.append(f"{step}: {shown}")
        if bundle is not None:
            steps.append(host_py("prune", str(target.keep)))
        for step in steps:
            echo(f"  {step}")


def releases(target: Target, echo: Echo, *, connect: type[Connection] = Connection) -> list[dict[str, Any]]:
    """Each host's releases and current, as host.py reports them (it writes nothing there)."""
    found = []
    failures: list[BuilderError] = []
    for dest in target.hosts:
        try:
            with connect(dest) as conn:
                status = Host(conn, target, echo).host_py("status")
        except BuilderError as exc:  # one host down must not hide the others' state
            echo(f"{dest}: cannot tell: {exc.message}")
            failures.append(exc)
            continue
        found.append({"host": str(dest), **status})
        marks = []
        for release in status["releases"]:
            stale = (status.get("stale") or {}).get(release["name"])
            flags = [f for f, on in (("current", release["name"] == status["current"]),
                                     ("previous", release["name"] == status["previous"]),
                                     ("incomplete", not release["complete"]),
                                     (f"stale: {stale}", bool(stale))) if on]
            marks.append(release["name"] + (f" ({', '.join(flags)})" if flags else ""))
        line = f"{dest}: current {status['current'] or '-'}; releases: {', '.join(marks) or 'none'}"
        if status.get("previous_unknown"):
            line += f"; previous unknown: {status['previous_unknown']}"
        echo(line)
    if failures:
        error = TransportError if all(isinstance(e, TransportError) for e in failures) else DeployError
        raise error(f"could not read the releases of {len(failures)} of {len(target.hosts)} host(s)",
                    hint="check that they are up")
    return found

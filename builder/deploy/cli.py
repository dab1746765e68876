"""`deploy`, `rollback` and `releases` on the command line (wired in by builder.__main__)."""
from __future__ import annotations

import argparse
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DeployError, UsageError
from ..matrix.deploy import find as find_target
from ..matrix.model import Matrix

if TYPE_CHECKING:
    from . import bundle as bundles

COMMANDS = ("deploy", "rollback", "releases", "doctor")
# As host.py checks it: a folder name under ROOT/releases/.
RELEASE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")


def release_name(text: str | None, option: str) -> None:
    """Refuse a release name host.py would refuse, here, before anything connects (exit 2)."""
    if text is not None and not RELEASE_NAME.fullmatch(text):
        raise UsageError(f"{option} {text!r} is not a release name",
                         hint="letters, digits and . _ + -, not starting with . _ + or - (e.g. v1234)")


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    deploy = sub.add_parser(
        "deploy", parents=[common], help="install a release on a deploy target's hosts and switch to it, in batches",
        description="Resolve the target's requirements to published artifacts, then host by host (in batches): "
        "copy what the host lacks, make ROOT/releases/RELEASE offline, check its imports, and switch "
        "ROOT/current to it between the target's hooks.",
    )
    deploy.add_argument("target", metavar="TARGET", help="a name under deploy: in the matrix file")
    deploy.add_argument("--release", required=True, metavar="NAME", help="the release's name, e.g. v1234")
    deploy.add_argument("--dry-run", action="store_true", help="print hosts, batches, files and commands; touch nothing")
    deploy.add_argument("--allow-downgrade", action="store_true",
                        help="switch to RELEASE even where it is older than the current release (see rollback --to)")
    deploy.add_argument("--skip-doctor", action="store_true",
                        help="emergencies only: do not compare the hosts with the platform's runtime image first "
                             "(release.json says it was skipped)")
    deploy.add_argument("--trust-new-key", action="store_true",
                        help="let hosts that trust another signing key replace it with this one (a rotated key)")
    deploy.add_argument("--export", type=Path, metavar="DIR",
                        help="write host.py, the plan and its files to DIR for configuration management, and stop")
    rollback = sub.add_parser("rollback", parents=[common], help="switch a target's hosts back to the previous (or a named) release")
    rollback.add_argument("target", metavar="TARGET")
    rollback.add_argument("--to", metavar="RELEASE", help="the release to go back to (default: each host's previous)")
    rollback.add_argument("--dry-run", action="store_true", help="print what would run; touch nothing")
    releases = sub.add_parser("releases", parents=[common], help="each host's releases and which is current")
    releases.add_argument("target", metavar="TARGET")
    doctor = sub.add_parser(
        "doctor", parents=[common], help="is each host of a target what its platform's runtime image is?",
        description="Ask every host of the target what deploy asks first (OS release, architecture, C library, "
        "the Python at the target's path, the OS packages the release needs) and compare with the platform's "
        "published fingerprint.json. Exit status 12 if a host is refused.",
    )
    doctor.add_argument("target", metavar="TARGET")


def run(matrix: Matrix, args: argparse.Namespace, echo: Callable[[str], None]) -> int:
    # Imported here, not above: every command's parser is made from this module, and the build
    # commands should not pay for loading deploy's machinery (a tenth of a second or more).
    from . import bundle as bundles
    from . import doctor as doctors
    from . import roll
    from .resolve import resolve

    if args.command == "deploy":
        release_name(args.release, "--release")
    elif args.command == "rollback":
        release_name(args.to, "--to")
    target = find_target(matrix, args.target)
    if args.command == "releases":
        roll.releases(target, echo)
        return 0
    if args.command == "doctor":
        wanted = doctors.expected(matrix, target, resolve(matrix, target.platform, target.format, target.requirements))
        verdicts = doctors.doctor(target, wanted, echo, make_host=lambda conn: roll.Host(conn, target, echo))
        warned = sum(1 for v in verdicts if v.warnings)
        echo(f"doctor of {target.name}: {len(verdicts)} host(s) are {target.platform}'s runtime image"
             + (f" ({warned} with warnings)" if warned else ""))
        return 0
    if args.command == "rollback":
        if args.dry_run:
            roll.dry_run(target, None, args.to, echo)
            return 0
        outcomes = roll.roll(target, lambda host: roll.rollback_host(host, args.to), echo, what="rollback")
        for line in roll.summary(outcomes, [], []):
            echo(line)
        echo(f"rollback of {target.name}: {len(outcomes)} host(s) on {args.to or 'their previous release'}")
        return 0
    bundle = bundles.make(matrix, target, args.release)
    echo(f"{target.name} {args.release}: {len(bundle.artifacts)} artifact(s) of {target.platform}: "
         + ", ".join(a.file for a in bundle.artifacts))
    if args.export:
        export(bundle, args.export)
        signed = ", trusted.pub.pem" if bundle.public_key is not None else ""
        echo(f"wrote {args.export}: host.py, plan.json{signed} and files/ (see examples/deploy/ansible/)")
        return 0
    want: doctors.Expected | None = None if args.skip_doctor else doctors.expected(matrix, target, bundle.artifacts)
    if args.dry_run:
        roll.dry_run(target, bundle, args.release, echo, None if want is None else list(want.needs))
        return 0
    said: dict[str, dict[str, Any]] = {}  # host -> what the doctor said there, for release.json

    def check(host: roll.Host) -> None:
        assert want is not None
        said[str(host.dest)] = doctors.ask(host, want).record()

    if want is None:
        echo("--skip-doctor: the hosts are not compared with the platform's runtime image; release.json says so")
    skipped = {"checked": False, "skipped": "--skip-doctor"}
    outcomes = roll.roll(target, lambda host: roll.deploy_host(host, bundle, allow_downgrade=args.allow_downgrade,
                                                                doctor=said.get(str(host.dest), skipped),
                                                                trust_new_key=args.trust_new_key),
                         echo, check=None if want is None else check)
    for line in roll.summary(outcomes, [], []):
        echo(line)
    changed = [o for o in outcomes if o.state == "deployed"]
    echo(f"deploy of {target.name} {args.release}: done on {len(outcomes)} host(s), "
         f"{len(changed)} switched, {len(outcomes) - len(changed)} already current")
    return 0


def export(bundle: bundles.Bundle, folder: Path) -> None:
    """host.py, plan.json and files/<sha256>/<name>: everything a playbook copies to a host."""
    if folder.exists() and any(folder.iterdir()):
        raise DeployError(f"{folder} is not empty", hint="export into a new folder")
    from .bundle import HOST_SCRIPT

    files = folder / "files"
    files.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HOST_SCRIPT, folder / "host.py")
    (folder / "plan.json").write_bytes(bundle.plan_bytes())
    if bundle.public_key is not None:  # the playbook has each host trust it (host.py trust)
        shutil.copyfile(bundle.public_key, folder / "trusted.pub.pem")
    for sha, path in bundle.files.items():
        (files / sha).mkdir()
        shutil.copyfile(path, files / sha / path.name)

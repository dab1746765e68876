"""`deploy`, `rollback` and `releases` on the command line (wired in by builder.__main__)."""
from __future__ import annotations

import argparse
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DeployError, UsageError
from ..matrix.deploy import find as find_target
from ..matrix.model import Matrix

if TYPE_CHECKING:
    from . import bundle as bundles

COMMANDS = ("deploy", "rollback", "releases")
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
    deploy.add_argument("--export", type=Path, metavar="DIR",
                        help="write host.py, the plan and its files to DIR for configuration management, and stop")
    rollback = sub.add_parser("rollback", parents=[common], help="switch a target's hosts back to the previous (or a named) release")
    rollback.add_argument("target", metavar="TARGET")
    rollback.add_argument("--to", metavar="RELEASE", help="the release to go back to (default: each host's previous)")
    rollback.add_argument("--dry-run", action="store_true", help="print what would run; touch nothing")
    releases = sub.add_parser("releases", parents=[common], help="each host's releases and which is current")
    releases.add_argument("target", metavar="TARGET")


def run(matrix: Matrix, args: argparse.Namespace, echo: Callable[[str], None]) -> int:
    # Imported here, not above: every command's parser is made from this module, and the build
    # commands should not pay for loading deploy's machinery (a tenth of a second or more).
    from . import bundle as bundles
    from . import roll

    if args.command == "deploy":
        release_name(args.release, "--release")
    elif args.command == "rollback":
        release_name(args.to, "--to")
    target = find_target(matrix, args.target)
    if args.command == "releases":
        roll.releases(target, echo)
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
        echo(f"wrote {args.export}: host.py, plan.json and files/ (see examples/deploy/ansible/)")
        return 0
    if args.dry_run:
        roll.dry_run(target, bundle, args.release, echo)
        return 0
    outcomes = roll.roll(target, lambda host: roll.deploy_host(host, bundle, allow_downgrade=args.allow_downgrade), echo)
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
    for sha, path in bundle.files.items():
        (files / sha).mkdir()
        shutil.copyfile(path, files / sha / path.name)

"""`doctor`, and the first step of every deploy: is each server what its platform's runtime image is?

The image's answers are in output/<platform>/fingerprint.json (taken with host.py's
`fingerprint` when builder published for the platform); each server is asked the same questions
by the same script, and the two are compared here:

- refused (HostMismatch, exit status 12): another OS release or architecture, an older C library
  (an extension may need a newer symbol), another Python version or ABI at the target's path,
  a run-time OS package that a release's artifact needs and the server lacks, and, where builder
  built the platform's interpreter as an OS package (output/<platform>/os/), a server without
  that package (its Python is another build, whatever its version says);
- warned, and the deploy goes on: a newer C library, another version of a package (the
  interpreter package's included), an interpreter binary whose sha256 differs while its version
  and ABI match.

Which OS packages a release needs is what system-packages.json says its artifacts need.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from debian.debian_support import version_compare

from ..errors import BuilderError, DeployError, HostMismatch, TransportError
from ..machines.ssh import Connection
from ..matrix.model import Matrix, Target
from ..output import fingerprint as fingerprints
from ..output import system
from ..output.ospackages import FOLDER
from .resolve import Artifact
from .roll import Host

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Expected:
    """What every server of a target must be: the runtime image's fingerprint and the OS
    packages the release's artifacts need (name -> the Python packages that need it)."""

    platform: str
    image: Mapping[str, Any]
    needs: Mapping[str, tuple[str, ...]]
    source: str = ""
    interpreter: system.Interpreter | None = None  # the platform's Python, built by builder as this package


@dataclass(frozen=True)
class Finding:
    refuse: bool
    text: str


@dataclass
class Verdict:
    """One host's answer, compared."""

    host: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def refusals(self) -> list[str]:
        return [f.text for f in self.findings if f.refuse]

    @property
    def warnings(self) -> list[str]:
        return [f.text for f in self.findings if not f.refuse]

    def record(self) -> dict[str, Any]:
        """What release.json keeps of it."""
        return {"checked": True, "warnings": self.warnings}


def expected(matrix: Matrix, target: Target, artifacts: Sequence[Artifact]) -> Expected:
    output = matrix.settings.output
    image = fingerprints.read(output, target.platform)
    found = system.read(output, target.platform)
    needs: dict[str, list[str]] = {}
    for artifact in artifacts:
        recorded = found.artifacts.get(artifact.file)
        for name in recorded.runtime if recorded else ():
            users = needs.setdefault(name, [])
            if artifact.package not in users:
                users.append(artifact.package)
    return Expected(target.platform, image, {name: tuple(users) for name, users in sorted(needs.items())},
                    str(output / target.platform / fingerprints.FILENAME), found.interpreter)


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _order(family: str, have: str, image: str) -> str:
    """"newer" or "older" (Debian: dpkg's order, by python-debian), or "another" where builder
    does not know the family's version order."""
    if family == "debian":
        return "newer" if version_compare(have, image) > 0 else "older"
    return "another"


def compare(want: Expected, host: str, answer: Mapping[str, Any]) -> Verdict:
    image, platform = want.image, want.platform
    verdict = Verdict(host)

    def refuse(text: str) -> None:
        verdict.findings.append(Finding(True, text))

    def warn(text: str) -> None:
        verdict.findings.append(Finding(False, text))

    i_os, h_os = image["os"], answer["os"]
    if (h_os["id"], h_os["release"]) != (i_os["id"], i_os["release"]):
        refuse(f"{host} runs {h_os['name']} ({h_os['id']} {h_os['release']}), not {i_os['id']} {i_os['release']} as "
               f"{platform}'s runtime image ({i_os['name']}): what is published for {platform} was built and tested "
               f"there; deploy to {i_os['id']} {i_os['release']} servers, or add a platform of {h_os['id']} "
               f"{h_os['release']} to the matrix and publish for it")
    if h_os["arch"] != i_os["arch"]:
        refuse(f"{host} is {h_os['arch']}, {platform}'s runtime image is {i_os['arch']}: its compiled modules cannot "
               f"run there; deploy to {i_os['arch']} servers")
    i_py, h_py = image["python"], answer["python"]
    if h_py is None:  # nothing more can be asked there
        refuse(f"there is no Python at {answer.get('asked_python')} on {host}: {platform}'s is {i_py['version']} "
               f"{i_py['abi']}; install the platform's Python there, or set python: in the target to where it is")
        return verdict
    i_c, h_c = image["libc"], answer["libc"]
    if h_c["name"] != i_c["name"]:
        refuse(f"{host} has {h_c['name']} {h_c['version']}, {platform}'s runtime image {i_c['name']} {i_c['version']}: "
               "its compiled modules are linked against the image's; deploy to servers of the platform")
    elif _version(h_c["version"]) < _version(i_c["version"]):
        refuse(f"{h_c['name']} {h_c['version']} on {host} is older than {platform}'s runtime image's {i_c['version']}: "
               f"an extension may need a newer symbol; update the C library there ({i_os['id']} {i_os['release']}'s "
               "updates)")
    elif _version(h_c["version"]) > _version(i_c["version"]):
        warn(f"{h_c['name']} {h_c['version']} on {host} is newer than {platform}'s runtime image's {i_c['version']}")
    where = f"the Python at {h_py['path']} on {host}"
    if h_py["version"] != i_py["version"]:
        refuse(f"{where} is {h_py['version']}, {platform}'s is {i_py['version']} ({i_py['path']} in its runtime image): "
               f"install the platform's Python there, or set python: in the target to where it is")
    elif h_py["abi"] != i_py["abi"]:
        refuse(f"{where} has ABI {h_py['abi']} ({h_py.get('unicode', '?')} unicode), {platform}'s has {i_py['abi']} "
               f"({i_py.get('unicode', '?')} unicode): its compiled modules will not load there; install the "
               "platform's Python build there")
    elif h_py["sha256"] != i_py["sha256"]:
        warn(f"{where} is another binary than the runtime image's (sha256 {h_py['sha256'][:12]}, the image's "
             f"{i_py['sha256'][:12]}); its version {h_py['version']} and ABI {h_py['abi']} match")
    family = i_os["family"]
    built = want.interpreter
    if built is not None:
        have = (answer.get("packages") or {}).get(built.package)
        if have is None:
            refuse(f"{built.package} is not installed on {host}: {platform}'s Python is builder's package "
                   f"{built.package} {built.version}, and the Python at {h_py['path']} there is another build; install "
                   f"{FOLDER}/{built.file} from the platform's output folder first (`python -m builder system-packages "
                   f"--platform {platform}` says how)")
        elif have.get("version") != built.version:
            warn(f"{built.package} on {host} is {have.get('version')}, {_order(family, str(have.get('version')), built.version)} "
                 f"than the published {built.version}")
    for name, users in want.needs.items():
        have = (answer.get("packages") or {}).get(name)
        made = image["packages"].get(name) or {}
        if have is None:
            sonames = ", ".join(made.get("sonames") or [])
            what = f"it provides {sonames} for {', '.join(users)}" if sonames else f"{', '.join(users)} need it"
            refuse(f"{name} is not installed on {host}: {what}; install it, e.g. with the Puppet class from "
                   f"`python -m builder system-packages --platform {platform} --format puppet` (or ansible, salt, shell)")
        elif made.get("version") and have.get("version") != made["version"]:
            warn(f"{name} on {host} is {have['version']}, {_order(family, have['version'], made['version'])} than the "
                 f"runtime image's {made['version']}")
    return verdict


# Where the target's Python is not there, host.py cannot run: the OS is still worth naming (a
# Debian 12 server has no python2.7), so plain sh says it.
PROBE = ('cat /etc/os-release 2>/dev/null; echo "@@arch@@ $(uname -m)"; '
         'if [ -x "$1" ]; then echo "@@python@@ present"; else echo "@@python@@ absent"; fi')


def fingerprint_of(conn_host: Host, want: Expected) -> dict[str, Any]:
    """host.py fingerprint's answer, or, where the target's Python is not there, what sh can
    tell of the host (its OS and architecture; python None)."""
    try:
        asked = ([want.interpreter.package] if want.interpreter else []) + list(want.needs)
        return dict(conn_host.host_py("fingerprint", *asked)["fingerprint"])
    except DeployError:
        done = conn_host.conn.run(["sh", "-c", PROBE, "probe", conn_host.target.python], timeout=60)
        if "@@python@@ absent" not in done.output:
            raise
    fields: dict[str, str] = {}
    for line in done.output.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isupper():
            fields[key] = value.strip().strip('"')
    arch = next((line.split(None, 1)[1] for line in done.output.splitlines() if line.startswith("@@arch@@ ")), "")
    ident, release = fields.get("ID", "unknown"), fields.get("VERSION_ID", "")
    return {"os": {"id": ident, "release": release, "name": fields.get("PRETTY_NAME", f"{ident} {release}"),
                   "arch": arch.strip(), "family": ident},
            "python": None, "asked_python": conn_host.target.python}


def ask(conn_host: Host, want: Expected) -> Verdict:
    """Ask one host and compare; HostMismatch naming every refusal."""
    answer = fingerprint_of(conn_host, want)
    conn_host.step = "doctor"
    verdict = compare(want, str(conn_host.dest), answer)
    for text in verdict.warnings:
        conn_host.say(f"warning: {text}")
    if verdict.refusals:
        raise HostMismatch("; ".join(verdict.refusals),
                           hint="make the server what the platform's runtime image is (see `python -m builder doctor "
                                f"{conn_host.target.name}`), or, in an emergency, deploy with --skip-doctor")
    conn_host.say(f"doctor: the host is {want.platform}'s runtime image"
                  + (f" ({len(verdict.warnings)} warning(s))" if verdict.warnings else ""))
    return verdict


def describe(want: Expected) -> str:
    image = want.image
    return (f"{want.platform}'s runtime image ({want.source}): {image['os']['id']} {image['os']['release']} "
            f"{image['os']['arch']}, {image['libc']['name']} {image['libc']['version']}, Python "
            f"{image['python']['version']} {image['python']['abi']} at {image['python']['path']}"
            + (f" from builder's package {want.interpreter.package} {want.interpreter.version}" if want.interpreter else "")
            + f"; OS packages the release needs: {', '.join(want.needs) or 'none'}")


def doctor(target: Target, want: Expected, echo: Echo, *, make_host: Callable[[Connection], Host],
           connect: type[Connection] = Connection) -> list[Verdict]:
    """Every host of the target, each said; HostMismatch (12) if any was refused, DeployError (10)
    if one could not answer, TransportError (8) if the others passed but some could not be reached."""
    echo(describe(want))
    verdicts: list[Verdict] = []
    refused: list[str] = []
    unreachable: list[str] = []
    failed: list[str] = []
    for dest in target.hosts:
        try:
            with connect(dest) as conn:
                answer = fingerprint_of(make_host(conn), want)
        except BuilderError as exc:  # one host down must not hide the others' answers
            echo(f"{dest}: cannot tell: {exc.message}")
            (unreachable if isinstance(exc, TransportError) else failed).append(str(dest))
            continue
        verdict = compare(want, str(dest), answer)
        verdicts.append(verdict)
        for text in verdict.refusals:
            echo(f"{dest}: REFUSED: {text}")
        for text in verdict.warnings:
            echo(f"{dest}: warning: {text}")
        if verdict.refusals:
            refused.append(str(dest))
        else:
            echo(f"{dest}: ok" + (" (with warnings)" if verdict.warnings else ""))
    if refused:
        raise HostMismatch(f"doctor of {target.name}: {len(refused)} of {len(target.hosts)} host(s) refused: "
                           f"{', '.join(refused)}", hint="each REFUSED line says what to change on that host")
    if failed:
        raise DeployError(f"doctor of {target.name}: {', '.join(failed)} could not answer", hint="see the lines above")
    if unreachable:
        raise TransportError(f"doctor of {target.name}: could not ask {', '.join(unreachable)}",
                             hint="check that they are up")
    return verdicts

"""What the servers of a platform must have installed: the OS packages its published artifacts
need at run time, kept in output/<platform>/system-packages.json and rendered for configuration
management (`python -m builder system-packages`).

Where the list comes from: each published artifact's cell's `system.<family>.runtime` list of
matrix.yaml, recorded when the cell is published (PublishRecord.runtime_packages). That is the
list the runtime image is given for that package: the image's RUNTIME_PACKAGES is the sorted
union of the same lists over the platform's packages (matrix.plan.runtime_packages). So a
server with these packages and the platform's Python is the runtime image the artifacts were
tested in, plus the application. Where builder built the platform's interpreter as an OS
package (`interpreter:` in the matrix, published to output/<platform>/os/), that package comes
first: the renderings verify its sha256 and install it from the file, then the list.

Pure: reading, merging and rendering; publish.py writes the file through its journal.
"""
from __future__ import annotations

import fnmatch
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from ..errors import BuilderError, NotPublished
from . import ospackages
from .index import Manifest, load_manifest
from .ospackages import FOLDER

FILENAME = "system-packages.json"
VERSION = 1
FORMATS = ("puppet", "ansible", "salt", "shell", "json")

# The install command of each family, as the runtime images install (no recommended packages).
INSTALL = {
    "debian": ("apt-get", "install", "-y", "--no-install-recommends"),
    "redhat": ("yum", "install", "-y"),
    "freebsd": ("pkg", "install", "-y"),
}


@dataclass(frozen=True)
class Needs:
    """What one published artifact needs on the server."""

    package: str
    version: str
    cell: str
    runtime: tuple[str, ...]  # OS package names, sorted


@dataclass(frozen=True)
class Interpreter:
    """The platform's interpreter package builder built and published (output/<platform>/os/)."""

    package: str
    version: str  # as the family's package manager reports it installed
    file: str  # its file name in os/
    sha256: str
    # the packages its Depends name (Debian: dpkg -i does not fetch them; yum and pkg do)
    depends: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServerPackages:
    """A platform's published artifacts and the OS packages each needs."""

    platform: str
    family: str
    artifacts: Mapping[str, Needs]  # artifact file name -> its needs
    # published artifacts whose needs were never recorded: file name -> its package
    unknown: Mapping[str, str] = field(default_factory=dict)
    interpreter: Interpreter | None = None
    at: str = ""  # the folder the servers find the interpreter's file in (renderings)

    @property
    def packages(self) -> tuple[str, ...]:
        """The union: every OS package any artifact needs, sorted."""
        return tuple(sorted({name for needs in self.artifacts.values() for name in needs.runtime}))

    def needed_by(self, name: str) -> list[dict[str, Any]]:
        """Who needs OS package `name`: one entry per (package, version), with its artifacts."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for artifact, needs in sorted(self.artifacts.items()):
            if name in needs.runtime:
                entry = found.setdefault((needs.package, needs.version), {
                    "package": needs.package, "version": needs.version, "cell": needs.cell, "artifacts": [],
                })
                entry["artifacts"].append(artifact)
        return [found[key] for key in sorted(found, key=lambda k: (canonicalize_name(k[0]), k[1]))]

    def only(self, patterns: Sequence[str]) -> ServerPackages:
        """The artifacts of the Python packages matching any glob (name or normalized name)."""
        if not patterns:
            return self
        names = sorted({n.package for n in self.artifacts.values()} | set(self.unknown.values()), key=canonicalize_name)
        for pattern in patterns:
            if not any(_matches(name, pattern) for name in names):
                raise NotPublished(
                    f"no package published for {self.platform} matches {pattern!r}",
                    hint=f"published there: {', '.join(names) or 'nothing'}",
                )
        kept = {name: n for name, n in self.artifacts.items() if any(_matches(n.package, p) for p in patterns)}
        unknown = {name: pkg for name, pkg in self.unknown.items() if any(_matches(pkg, p) for p in patterns)}
        return replace(self, artifacts=kept, unknown=unknown)


def _matches(package: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(package, pattern) or fnmatch.fnmatchcase(canonicalize_name(package), pattern)


def merged(old: ServerPackages | None, manifest: Manifest, family: str,
           new: Mapping[str, Needs | None]) -> ServerPackages:
    """The document after a publish: `new` for the artifacts just published (None: not recorded),
    the old document's entry for the others still in the manifest (the folder keeps history)."""
    artifacts: dict[str, Needs] = {}
    unknown: dict[str, str] = {}
    for name, entry in sorted(manifest.artifacts.items()):
        needs = new[name] if name in new else (old.artifacts.get(name) if old else None)
        if needs is not None and (needs.cell, needs.version) == (entry.cell, entry.version):
            artifacts[name] = needs
        else:
            unknown[name] = entry.package
    return ServerPackages(manifest.platform, family or (old.family if old else ""), artifacts, unknown)


def document(found: ServerPackages) -> dict[str, Any]:
    """The JSON document: the union first, then who needs each, then each artifact's needs."""
    interpreter = found.interpreter
    return {
        "system_packages_version": VERSION,
        "platform": found.platform,
        "family": found.family,
        **({"interpreter": {"package": interpreter.package, "version": interpreter.version,
                            "file": f"{FOLDER}/{interpreter.file}", "sha256": interpreter.sha256,
                            "depends": list(interpreter.depends)}} if interpreter else {}),
        "packages": list(found.packages),
        "needed_by": {name: found.needed_by(name) for name in found.packages},
        "artifacts": {
            name: {"package": n.package, "version": n.version, "cell": n.cell, "runtime": list(n.runtime)}
            for name, n in sorted(found.artifacts.items())
        },
        "unknown": dict(sorted(found.unknown.items())),
    }


def dump(found: ServerPackages) -> bytes:
    return (json.dumps(document(found), indent=2, sort_keys=False) + "\n").encode()


def load(raw: bytes, where: str) -> ServerPackages:
    """Parse a system-packages.json; BuilderError naming the file and the key when it is wrong."""
    hint = "publish the platform again (python -m builder all --platform PLATFORM --force) to rewrite it"
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise BuilderError(f"{where} is not JSON: {exc}", hint=hint) from exc
    if not isinstance(data, dict) or data.get("system_packages_version") != VERSION:
        raise BuilderError(f"{where}: system_packages_version is not {VERSION}", hint=hint)
    try:
        artifacts = {
            str(name): Needs(str(e["package"]), str(e["version"]), str(e["cell"]),
                             tuple(sorted(str(p) for p in e["runtime"])))
            for name, e in data["artifacts"].items()
        }
        unknown = {str(name): str(package) for name, package in data.get("unknown", {}).items()}
        return ServerPackages(str(data["platform"]), str(data["family"]), artifacts, unknown)
    except (KeyError, TypeError, AttributeError) as exc:
        raise BuilderError(f"{where}: artifacts entry is malformed ({exc!r} missing or wrong)", hint=hint) from exc


def read(output: Path, platform: str) -> ServerPackages:
    """What is published for the platform, as its folder says; NotPublished when nothing is, or
    when the folder was published without the file. Only artifacts of the manifest count."""
    folder = output / platform
    publish_it = f"python -m builder all --platform {platform}"
    try:
        manifest = load_manifest((folder / "manifest.json").read_bytes(), str(folder / "manifest.json"))
    except FileNotFoundError:
        raise NotPublished(f"nothing is published for {platform}: {folder}/manifest.json does not exist",
                           hint=f"build, test and publish it first: {publish_it}") from None
    except OSError as exc:
        raise BuilderError(f"cannot read {folder / 'manifest.json'}: {exc.strerror}") from exc
    path = folder / FILENAME
    try:
        found = load(path.read_bytes(), str(path))
    except FileNotFoundError:
        raise NotPublished(
            f"{path} does not exist: {platform} was published by a builder that did not record the OS packages",
            hint=f"publish it again: {publish_it} --force",
        ) from None
    except OSError as exc:
        raise BuilderError(f"cannot read {path}: {exc.strerror}") from exc
    if found.platform != platform:
        raise BuilderError(f"{path} says platform {found.platform}, not {platform}", hint=f"publish it again: {publish_it} --force")
    kept = {name: needs for name, needs in found.artifacts.items() if name in manifest.artifacts}
    unknown = {name: entry.package for name, entry in sorted(manifest.artifacts.items()) if name not in kept}
    return replace(found, artifacts=kept, unknown=unknown, interpreter=interpreter_of(output, platform),
                   at=str((folder / FOLDER).resolve()))


def interpreter_of(output: Path, platform: str) -> Interpreter | None:
    """The platform's published interpreter package, with the names its Depends lists (.deb)."""
    found = ospackages.interpreter(output, platform)
    if found is None:
        return None
    name, entry = found
    depends: tuple[str, ...] = ()
    if name.endswith(".deb"):
        from debian.debfile import DebError, DebFile

        path = output / platform / FOLDER / name
        try:
            control = DebFile(str(path)).debcontrol()
        except (OSError, DebError) as exc:
            raise BuilderError(f"cannot read the control file of {path}: {exc}",
                               hint="run python -m builder verify; publish the platform again") from exc
        # "libc6 (>= 2.36), libffi8 (>= 3.4)": the names (Depends of this package have no alternatives)
        depends = tuple(sorted({part.split("|")[0].split("(")[0].strip()
                                for part in str(control.get("Depends", "")).split(",") if part.strip()}))
    return Interpreter(str(entry["package"]), str(entry.get("version", "")), name, str(entry.get("sha256", "")), depends)


# ---- rendering -------------------------------------------------------------------------------

# Where the renderings put the interpreter's file on the server before installing it.
SERVER_CACHE = "/var/cache/builder"


def render(found: ServerPackages, fmt: str, source: str) -> str:
    """The list in one format, ready to paste. `source` names the file it was read from."""
    if fmt == "json":
        return json.dumps(document(found), indent=2) + "\n"
    if found.family not in INSTALL:
        raise BuilderError(f"{source}: family is {found.family!r}, not one of {', '.join(INSTALL)}",
                           hint="publish the platform again to rewrite the file, or use --format json")
    return {"puppet": _puppet, "ansible": _ansible, "salt": _salt, "shell": _shell}[fmt](found, source)


def _names(found: ServerPackages) -> tuple[str, ...]:
    """What the package manager installs: the artifacts' packages and those the interpreter
    package's Depends name (installed before it: dpkg -i does not fetch them)."""
    return tuple(sorted({*found.packages, *(found.interpreter.depends if found.interpreter else ())}))


def _paths(found: ServerPackages, interpreter: Interpreter) -> tuple[str, str]:
    """The interpreter's file where the servers find it, and where the renderings put it there."""
    return f"{found.at}/{interpreter.file}", f"{SERVER_CACHE}/{interpreter.file}"


def _header(found: ServerPackages, source: str) -> list[str]:
    lines = [
        f"# The OS packages the servers of {found.platform} need to run what builder published for it",
        f"# ({source}): what its runtime image was given for those packages.",
    ]
    interpreter = found.interpreter
    if interpreter:
        lines += [
            f"# First, the platform's interpreter, built by builder: {interpreter.package} {interpreter.version}",
            f"#   ({found.at}/{interpreter.file}, sha256 {interpreter.sha256}),",
            "#   verified and installed from its file after the packages its Depends name"
            + (f": {', '.join(interpreter.depends)}" if interpreter.depends else ""),
        ]
    width = max((len(name) for name in found.packages), default=0)
    for name in found.packages:
        users = "; ".join(f"{u['package']} {u['version']} ({', '.join(u['artifacts'])})" for u in found.needed_by(name))
        lines.append(f"#   {name.ljust(width)}  for {users}")
    if not found.packages:
        lines.append("#   none: the published artifacts need no OS packages beyond the platform's Python")
    if found.unknown:
        lines.append(f"# INCOMPLETE: published without a record of their OS packages: {', '.join(found.unknown)}")
    return lines


def _identifier(platform: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", platform.lower())


def _puppet(found: ServerPackages, source: str) -> str:
    lines = [*_header(found, source), f"class builder_system_packages_{_identifier(found.platform)} {{"]
    names = _names(found)
    if names:
        lines.append(f"  package {{ [{', '.join(_puppet_string(name) for name in names)}]:")
        lines.append("    ensure          => installed,")
        if found.family == "debian":
            lines.append("    install_options => ['--no-install-recommends'],")
        lines.append("  }")
    interpreter = found.interpreter
    if interpreter:
        # With a Puppet server, put the file in a module and make source a puppet:/// URL.
        published, local = _paths(found, interpreter)
        lines += [
            f"  file {{ {_puppet_string(SERVER_CACHE)}: ensure => directory }}",
            f"  file {{ {_puppet_string(local)}:",
            "    ensure         => file,",
            f"    source         => {_puppet_string(published)},",
            "    checksum       => 'sha256',",
            f"    checksum_value => {_puppet_string(interpreter.sha256)},",
            f"    require        => File[{_puppet_string(SERVER_CACHE)}],",
            "  }",
        ]
        after = [f"File[{_puppet_string(local)}]"] + [f"Package[{_puppet_string(n)}]" for n in names]
        if found.family == "freebsd":
            lines += [
                f"  exec {{ {_puppet_string('pkg add ' + local)}:",
                f"    unless  => {_puppet_string('pkg info -e ' + interpreter.package)},",
                "    path    => ['/usr/sbin', '/usr/bin', '/sbin', '/bin'],",
                f"    require => [{', '.join(after)}],",
                "  }",
            ]
        else:
            lines += [
                f"  package {{ {_puppet_string(interpreter.package)}:",
                "    ensure   => installed,",
                f"    provider => {'dpkg' if found.family == 'debian' else 'yum'},",
                f"    source   => {_puppet_string(local)},",
                f"    require  => [{', '.join(after)}],",
                "  }",
            ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _puppet_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _yaml_list(names: Sequence[str], indent: str) -> list[str]:
    # JSON strings are YAML scalars: no package name can be taken for another type.
    return [f"{indent}- {json.dumps(name)}" for name in names]


def _ansible(found: ServerPackages, source: str) -> str:
    var = "builder_system_packages"
    names = _names(found)
    lines = [
        *_header(found, source),
        "# A playbook (ansible-playbook -i INVENTORY THIS.yml --limit HOSTS, as root or with --become);",
        "# its vars and its task can as well go into a role's vars/main.yml and tasks/main.yml.",
        f"- name: {json.dumps('OS packages of ' + found.platform)}",
        "  hosts: all",
        "  vars:",
    ]
    lines += [f"    {var}:", *_yaml_list(names, "      ")] if names else [f"    {var}: []"]
    lines += [
        "  tasks:",
        f"    - name: {json.dumps('Install the run-time OS packages of ' + found.platform)}",
        "      ansible.builtin.package:",
        f'        name: "{{{{ {var} }}}}"',
        "        state: present",
    ]
    if found.family == "debian":  # apt's options: the same install as the runtime image's
        lines += ["        update_cache: true", "        install_recommends: false"]
    interpreter = found.interpreter
    if interpreter:
        published, local = _paths(found, interpreter)
        lines += [
            f"    - name: {json.dumps('Copy the interpreter package ' + interpreter.file)}",
            "      ansible.builtin.copy:",
            f"        src: {json.dumps(published)}",
            f"        dest: {json.dumps(SERVER_CACHE + '/')}",
            '        mode: "0644"',
            f"    - name: {json.dumps('Read its sha256 on the server')}",
            "      ansible.builtin.stat:",
            f"        path: {json.dumps(local)}",
            "        checksum_algorithm: sha256",
            "      register: builder_interpreter_file",
            f"    - name: {json.dumps('Refuse it unless it is the published file')}",
            "      ansible.builtin.assert:",
            "        that:",
            f"          - {json.dumps('builder_interpreter_file.stat.checksum == ' + json.dumps(interpreter.sha256))}",
            f"        fail_msg: {json.dumps(local + ' is not the published ' + interpreter.file)}",
            f"    - name: {json.dumps('Install the interpreter ' + interpreter.package + ' ' + interpreter.version)}",
        ]
        if found.family == "debian":
            lines += ["      ansible.builtin.apt:", f"        deb: {json.dumps(local)}"]
        elif found.family == "redhat":
            lines += ["      ansible.builtin.yum:", f"        name: {json.dumps(local)}", "        state: present"]
        else:
            lines += ["      ansible.builtin.shell:",
                      f"        cmd: {json.dumps(f'pkg info -e {interpreter.package} || pkg add {local}')}"]
    return "\n".join(lines) + "\n"


def _salt(found: ServerPackages, source: str) -> str:
    names = _names(found)
    state = f"builder-system-packages-{found.platform}"
    lines = [*_header(found, source), f"{state}:"]
    if not names:
        lines.append("  test.nop: []")
    else:
        lines += ["  pkg.installed:", "    - pkgs:"]
        lines += _yaml_list(names, "      ")
        if found.family == "debian":
            lines += ["    - refresh: true", "    - install_recommends: false"]
    interpreter = found.interpreter
    if interpreter:
        published, local = _paths(found, interpreter)
        lines += [
            f"builder-interpreter-file-{found.platform}:",
            "  file.managed:",
            f"    - name: {json.dumps(local)}",
            f"    - source: {json.dumps(published)}",
            f"    - source_hash: {json.dumps('sha256=' + interpreter.sha256)}",
            "    - makedirs: true",
            f"builder-interpreter-{found.platform}:",
            "  pkg.installed:",
            "    - sources:",
            f"      - {json.dumps(interpreter.package)}: {json.dumps(local)}",
            "    - require:",
            f"      - file: builder-interpreter-file-{found.platform}",
        ]
        if names:
            lines.append(f"      - pkg: {state}")
    return "\n".join(lines) + "\n"


def _shell(found: ServerPackages, source: str) -> str:
    lines = _header(found, source)
    names = _names(found)
    if names:
        lines.append(shlex.join([*INSTALL[found.family], *names]))
    interpreter = found.interpreter
    if interpreter:
        path, _ = _paths(found, interpreter)
        if found.family == "freebsd":
            lines.append(f'test "$(sha256 -q {shlex.quote(path)})" = {interpreter.sha256}')
        else:
            lines.append(f"echo {shlex.quote(interpreter.sha256 + '  ' + path)} | sha256sum -c -")
        lines.append(shlex.join({"debian": ["dpkg", "-i", path], "redhat": ["yum", "install", "-y", path],
                                 "freebsd": ["pkg", "add", path]}[found.family]))
    return "\n".join(lines) + "\n"

"""What the servers of a platform must have installed: the OS packages its published artifacts
need at run time, kept in output/<platform>/system-packages.json and rendered for configuration
management (`python -m builder system-packages`).

Where the list comes from: each published artifact's cell's `system.<family>.runtime` list of
matrix.yaml, recorded when the cell is published (PublishRecord.runtime_packages). That is the
list the runtime image is given for that package: the image's RUNTIME_PACKAGES is the sorted
union of the same lists over the platform's packages (matrix.plan.runtime_packages). So a
server with these packages and the platform's Python is the runtime image the artifacts were
tested in, plus the application. The interpreter itself is the platform's (its Dockerfile or
machine) and is not in the list.

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
from .index import Manifest, load_manifest

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
class ServerPackages:
    """A platform's published artifacts and the OS packages each needs."""

    platform: str
    family: str
    artifacts: Mapping[str, Needs]  # artifact file name -> its needs
    # published artifacts whose needs were never recorded: file name -> its package
    unknown: Mapping[str, str] = field(default_factory=dict)

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
    return {
        "system_packages_version": VERSION,
        "platform": found.platform,
        "family": found.family,
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
    return replace(found, artifacts=kept, unknown=unknown)


# ---- rendering -------------------------------------------------------------------------------

def render(found: ServerPackages, fmt: str, source: str) -> str:
    """The list in one format, ready to paste. `source` names the file it was read from."""
    if fmt == "json":
        return json.dumps(document(found), indent=2) + "\n"
    if found.family not in INSTALL:
        raise BuilderError(f"{source}: family is {found.family!r}, not one of {', '.join(INSTALL)}",
                           hint="publish the platform again to rewrite the file, or use --format json")
    return {"puppet": _puppet, "ansible": _ansible, "salt": _salt, "shell": _shell}[fmt](found, source)


def _header(found: ServerPackages, source: str) -> list[str]:
    lines = [
        f"# The OS packages the servers of {found.platform} need to run what builder published for it",
        f"# ({source}): what its runtime image was given for those packages.",
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
    if found.packages:
        names = ", ".join(_puppet_string(name) for name in found.packages)
        lines.append(f"  package {{ [{names}]:")
        lines.append("    ensure          => installed,")
        if found.family == "debian":
            lines.append("    install_options => ['--no-install-recommends'],")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _puppet_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _yaml_list(names: Sequence[str], indent: str) -> list[str]:
    # JSON strings are YAML scalars: no package name can be taken for another type.
    return [f"{indent}- {json.dumps(name)}" for name in names]


def _ansible(found: ServerPackages, source: str) -> str:
    var = "builder_system_packages"
    lines = [
        *_header(found, source),
        "# A playbook (ansible-playbook -i INVENTORY THIS.yml --limit HOSTS, as root or with --become);",
        "# its vars and its task can as well go into a role's vars/main.yml and tasks/main.yml.",
        f"- name: {json.dumps('OS packages of ' + found.platform)}",
        "  hosts: all",
        "  vars:",
    ]
    lines += [f"    {var}:", *_yaml_list(found.packages, "      ")] if found.packages else [f"    {var}: []"]
    lines += [
        "  tasks:",
        f"    - name: {json.dumps('Install the run-time OS packages of ' + found.platform)}",
        "      ansible.builtin.package:",
        f'        name: "{{{{ {var} }}}}"',
        "        state: present",
    ]
    if found.family == "debian":  # apt's options: the same install as the runtime image's
        lines += ["        update_cache: true", "        install_recommends: false"]
    return "\n".join(lines) + "\n"


def _salt(found: ServerPackages, source: str) -> str:
    lines = [*_header(found, source), f"builder-system-packages-{found.platform}:"]
    if not found.packages:
        return "\n".join([*lines, "  test.nop: []"]) + "\n"
    lines += ["  pkg.installed:", "    - pkgs:"]
    lines += _yaml_list(found.packages, "      ")
    if found.family == "debian":
        lines += ["    - refresh: true", "    - install_recommends: false"]
    return "\n".join(lines) + "\n"


def _shell(found: ServerPackages, source: str) -> str:
    lines = _header(found, source)
    if found.packages:
        lines.append(shlex.join([*INSTALL[found.family], *found.packages]))
    return "\n".join(lines) + "\n"

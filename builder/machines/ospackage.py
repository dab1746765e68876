"""A platform's interpreter as an OS package of its family: the package metadata builder writes
(Debian control files, the rpm spec, FreeBSD's pkg manifest), the key that decides when to build
it again, and where a built one is kept.

The build itself is builder/guest/interpreter.sh, run in the platform's interpreter image with no
network; the docker backend drives it. Nothing here runs a command.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..matrix.model import Interpreter, Matrix, Platform

GUEST_SCRIPT = Path(__file__).resolve().parent.parent / "guest" / "interpreter.sh"
# The folder of the platform's Dockerfile's stage that holds the interpreter's build tools.
BUILD_TARGET = "interpreter"
# The tag of the image the engine keeps a built and tested package set in (engine.keep_folder).
KEPT_TAG = "interpreter-packages"
SUFFIXES = {"debian": ".deb", "redhat": ".rpm", "freebsd": ".pkg"}
DEV_SUFFIX = {"debian": "-dev", "redhat": "-devel", "freebsd": ""}
MAINTAINER = "builder <builder@localhost>"
# OpenSSL and Python take 5-20 minutes on two busy cores: the build's time limit is this, or the
# platform's limits.timeout when that is longer.
BUILD_TIMEOUT = 7200
# Bumped when what this module writes changes in a way the key cannot see.
FORMAT = "1"


def abi(interpreter: Interpreter) -> str:
    """2.7 of 2.7.18: what `python(abi)` is provided as."""
    return ".".join(interpreter.version.split(".")[:2])


def summary(interpreter: Interpreter) -> str:
    line = f"Python {interpreter.version} in {interpreter.prefix}, built by builder"
    if interpreter.openssl is not None:
        line += f" with a private OpenSSL {interpreter.openssl.version}"
    return line


def _description(interpreter: Interpreter) -> list[str]:
    flags = " ".join(interpreter.configure) or "(none)"
    lines = [
        f"Installed with `make altinstall` into {interpreter.prefix}: python{abi(interpreter)}, never `python`,",
        "so the system's own Python is left alone.",
        f"configure flags: {flags}.",
        f"Python source sha256: {interpreter.python.sha256}.",
    ]
    if interpreter.openssl is not None:
        lines.append(f"OpenSSL {interpreter.openssl.version} in {interpreter.prefix}/lib for the ssl module only, "
                     f"source sha256: {interpreter.openssl.sha256}.")
    return lines


def package_version(platform: Platform) -> str:
    """The interpreter package's version as the family's package manager reports it installed
    (dpkg-query, rpm -q, pkg query): what the servers are compared with."""
    interpreter = platform.interpreter
    assert interpreter is not None
    separator = "_" if platform.family == "freebsd" else "-"
    return f"{interpreter.version}{separator}{interpreter.release}"


def package_names(platform: Platform, files: Sequence[Path]) -> dict[str, str]:
    """Each built file's package name (by file name): the runtime package first, then the -dev one."""
    interpreter = platform.interpreter
    assert interpreter is not None
    dev = interpreter.package + DEV_SUFFIX[platform.family]
    return {f.name: interpreter.package if i == 0 else dev for i, f in enumerate(files)}


def deb_control(interpreter: Interpreter, dev: bool = False, arch: str = "amd64") -> str:
    """A control file without Depends and Installed-Size: the guest adds those from what it built
    (each linked library's package, as `dpkg -S` names it in the build image)."""
    name = interpreter.package + (DEV_SUFFIX["debian"] if dev else "")
    version = f"{interpreter.version}-{interpreter.release}"
    lines = [
        f"Package: {name}",
        f"Version: {version}",
        f"Architecture: {arch}",
        f"Maintainer: {MAINTAINER}",
        "Section: interpreters" if not dev else "Section: libdevel",
        "Priority: optional",
    ]
    if dev:
        lines.append(f"Depends: {interpreter.package} (= {version})")
        lines.append(f"Description: headers and static library of {summary(interpreter)}")
    else:
        lines.append(f"Provides: python-abi-{abi(interpreter)}")
        lines.append(f"Description: {summary(interpreter)}")
    lines += [" " + line for line in _description(interpreter)]
    return "\n".join(lines) + "\n"


def rpm_spec(interpreter: Interpreter) -> str:
    """The spec rpmbuild makes the package from: the staged trees the guest built (%{stage},
    %{devstage}) and their file lists (%{filelist}, %{devfilelist}), given with --define.

    AutoReq stays on (rpm reads the sonames it links); AutoProv is off, so yum never takes this
    Python's modules or private libraries for the system's; `python(abi)` and `python-abi` are
    provided explicitly, as a Python beside the system's is expected to."""
    short = abi(interpreter)
    private = interpreter.openssl is not None
    lines = [
        f"Name: {interpreter.package}",
        f"Version: {interpreter.version}",
        f"Release: {interpreter.release}",
        f"Summary: {summary(interpreter)}",
        "License: PSF-2.0" + (" and OpenSSL" if private else ""),
        "Group: Development/Languages",
        "AutoReq: yes",
        "AutoProv: no",
        f"Provides: python-abi = {short}",
        f"Provides: python(abi) = {short}",
        "# A prebuilt tree: no debuginfo package, no stripping, no byte-compiling with the system's",
        "# Python, no build-id links outside the prefix, and a gzip payload old rpm versions read.",
        "%define debug_package %{nil}",
        "%define __os_install_post %{nil}",
        "%define _build_id_links none",
        "%define _binary_payload w9.gzdio",
    ]
    if private:
        lines += [
            "# The private OpenSSL is the package's own: not a requirement on the system's.",
            "%global __requires_exclude ^lib(ssl|crypto)\\.so\\.",
        ]
    lines += [
        "",
        "%description",
        *_description(interpreter),
        "",
        "%package devel",
        f"Summary: headers and static library of {summary(interpreter)}",
        "Group: Development/Languages",
        "AutoReqProv: no",
        f"Requires: {interpreter.package} = %{{version}}-%{{release}}",
        "",
        "%description devel",
        f"The headers and static library of {interpreter.package}, for building extension modules.",
        "",
        "%install",
        "mkdir -p %{buildroot}",
        "cp -a %{stage}/. %{buildroot}/",
        "cp -a %{devstage}/. %{buildroot}/",
        "",
        "%files -f %{filelist}",
        "%defattr(-,root,root,-)",
        "",
        "%files devel -f %{devfilelist}",
        "%defattr(-,root,root,-)",
        "",
    ]
    return "\n".join(lines)


def pkg_manifest(interpreter: Interpreter, abi_string: str = "FreeBSD:13:amd64") -> str:
    """FreeBSD's +MANIFEST for `pkg create -M` (UCL, of which JSON is a part). pkg reads the
    shared libraries the files need itself (shlibs_required); deps on other packages come from
    those."""
    manifest = {
        "name": interpreter.package,
        "origin": f"local/{interpreter.package}",
        "version": f"{interpreter.version}_{interpreter.release}",
        "comment": summary(interpreter),
        "desc": "\n".join(_description(interpreter)),
        "maintainer": MAINTAINER,
        "www": "https://www.python.org/",
        "prefix": interpreter.prefix,
        "abi": abi_string,
        "licenselogic": "single",
        "licenses": ["PSFL"],
        "categories": ["lang"],
        "annotations": {"python_abi": abi(interpreter)},
    }
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def metadata(platform: Platform) -> dict[str, str]:
    """The files of the META folder the guest reads, by name, for the platform's family."""
    interpreter = platform.interpreter
    assert interpreter is not None
    if platform.family == "debian":
        return {"control": deb_control(interpreter), "control-dev": deb_control(interpreter, dev=True)}
    if platform.family == "redhat":
        return {"package.spec": rpm_spec(interpreter)}
    return {"+MANIFEST": pkg_manifest(interpreter)}


def guest_env(platform: Platform, sources: dict[str, str], meta: str, out: str) -> dict[str, str]:
    """The environment of interpreter.sh: `sources` are the guest paths of the pinned tarballs."""
    interpreter = platform.interpreter
    assert interpreter is not None
    return {
        "PREFIX": interpreter.prefix,
        "PYTHON_SOURCE": sources[interpreter.python.sha256],
        "OPENSSL_SOURCE": sources[interpreter.openssl.sha256] if interpreter.openssl else "",
        "CONFIGURE": " ".join(interpreter.configure),
        "FAMILY": platform.family,
        "PACKAGE": interpreter.package,
        "META": meta,
        "OUT": out,
        "LANG": "C.UTF-8",
    }


def input_key(platform: Platform, build_image: str) -> str:
    """Everything the package is made from: the image it is built in (its base and tools), the
    sources, the options, the guest script and the metadata. Equal keys: the same package."""
    interpreter = platform.interpreter
    assert interpreter is not None
    digest = hashlib.sha256()
    parts = [FORMAT, build_image, platform.family, GUEST_SCRIPT.read_bytes().hex(),
             json.dumps(guest_env(platform, {p.sha256: p.sha256 for p in interpreter.pins}, "", ""), sort_keys=True),
             json.dumps(metadata(platform), sort_keys=True)]
    for part in parts:
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class Built:
    """A built (and tested) interpreter package set in the cache: its files and what they came from."""

    key: str
    files: tuple[Path, ...]  # the runtime package first, then the -dev one
    about: dict[str, object]

    @property
    def runtime(self) -> Path:
        return self.files[0]


def cache_folder(matrix: Matrix, key: str) -> Path:
    return matrix.settings.cache / "interpreter" / key[:32]


def cached(matrix: Matrix, key: str) -> Built | None:
    """The package set of that key, when a build of it finished and passed its test."""
    folder = cache_folder(matrix, key)
    about_path = folder / "interpreter.json"
    try:
        about = json.loads(about_path.read_text())
    except (OSError, ValueError):
        return None
    if about.get("key") != key or not about.get("tested"):
        return None
    files = tuple(folder / name for name in about.get("files", []))
    if not files or not all(f.is_file() for f in files):
        return None
    return Built(key, files, about)


def order(files: list[Path], platform: Platform) -> list[Path]:
    """The runtime package before the -dev (-devel) one."""
    dev = DEV_SUFFIX[platform.family]
    assert platform.interpreter is not None
    devname = platform.interpreter.package + dev
    return sorted(files, key=lambda f: (bool(dev) and f.name.startswith(devname + "_") or f.name.startswith(devname + "-"), f.name))


def test_dockerfile(platform: Platform, package: str) -> str:
    """The package's test image: the platform's bare base and that package alone, installed by the
    family's installer as a server would, which fetches what its Depends (Requires) name."""
    install = {
        "debian": "apt-get update && apt-get install -y --no-install-recommends /tmp/{0} && rm -rf /var/lib/apt/lists/*",
        "redhat": "yum -y install /tmp/{0} && yum clean all",
        "freebsd": "pkg add /tmp/{0}",
    }[platform.family].format(package)
    return "\n".join([
        "ARG BASE",
        "FROM ${BASE}",
        "ENV LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive",
        f"COPY {package} /tmp/",
        f"RUN {install} && rm -f /tmp/{package}",
        "",
    ])


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A throw-away certificate and key for `localhost`, for the test's TLS handshake."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "localhost.pem", folder / "localhost.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cert_path, key_path

"""The validated matrix: frozen dataclasses. Nothing past builder.matrix.load sees a raw dict."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .hosts import Destination

Format = Literal["egg", "wheel"]
FORMATS: tuple[Format, ...] = ("egg", "wheel")
Family = Literal["debian", "redhat", "freebsd"]
FAMILIES: tuple[Family, ...] = ("debian", "redhat", "freebsd")
BackendName = Literal["docker", "vagrant"]
BACKENDS: tuple[BackendName, ...] = ("docker", "vagrant")


@dataclass(frozen=True)
class Pin:
    """A file pinned by sha256: an sdist, a build tool (Cython) or a platform tool (virtualenv).

    By default it comes from the package index (the file of project `name` whose sha256 is the
    pin); `url` or `path` (absolute once loaded) name it directly instead.
    """

    name: str
    version: str
    sha256: str
    url: str | None = None
    path: str | None = None


@dataclass(frozen=True)
class SystemPackages:
    """OS packages of one platform family: needed to build, and needed on the servers."""

    build: tuple[str, ...] = ()
    runtime: tuple[str, ...] = ()


@dataclass(frozen=True)
class BuildSpec:
    """What may differ per platform for one package (`overrides:` in matrix.yaml)."""

    source: Pin
    build_requires: tuple[Pin, ...] = ()
    setup_args: tuple[str, ...] = ()
    # PEP 517 config settings for a pyproject.toml build (pip -C KEY=VALUE), in order; a key
    # given a list in the matrix appears once per value (meson-python's setup-args).
    config_settings: tuple[tuple[str, str], ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    # None: at least one extension module must load as an extension; () : a pure package.
    extensions: tuple[str, ...] | None = None
    skip_imports: tuple[str, ...] = ()
    test: str | None = None


@dataclass(frozen=True)
class Package:
    name: str
    formats: tuple[Format, ...]
    spec: BuildSpec
    overrides: Mapping[str, BuildSpec] = field(default_factory=dict)  # platform name -> merged spec
    system: Mapping[Family, SystemPackages] = field(default_factory=dict)
    depends: tuple[str, ...] = ()  # other packages of the matrix needed at run time
    platforms: tuple[str, ...] | None = None  # None: every platform
    location: str = ""  # "matrix.yaml:12", for messages
    # overrides.<platform>.system: one platform's lists in place of its family's (libffi7 on
    # Debian 11, libffi8 on Debian 12), by platform name.
    platform_system: Mapping[str, SystemPackages] = field(default_factory=dict)

    def spec_for(self, platform: str) -> BuildSpec:
        return self.overrides.get(platform, self.spec)

    def system_for(self, family: Family, platform: str | None = None) -> SystemPackages:
        if platform is not None and platform in self.platform_system:
            return self.platform_system[platform]
        return self.system.get(family, SystemPackages())


@dataclass(frozen=True)
class Base:
    """Where a platform's images start: a Debian suite made locally, or a registry image."""

    kind: Literal["debootstrap", "image"]
    value: str  # "bullseye" or "centos:6"


@dataclass(frozen=True)
class Limits:
    memory: str = "2g"
    pids: int = 1024
    timeout: int = 1800  # seconds, per stage of a cell
    output: str = "1g"  # the most a guest may hand back (its out/ folder): no artifact comes near

    @property
    def output_bytes(self) -> int:
        return size_bytes(self.output)


def file_of(location: str) -> str:
    """The file of a `FILE:LINE` location (a Platform's or Package's), as the user named it
    (`--matrix cases/x.yaml`), for messages that say which file to change."""
    name, _, line = location.rpartition(":")
    return name if name and line.isdigit() else (location or "matrix.yaml")


def size_bytes(text: str) -> int:
    """An amount such as "512m", "2g" (or "2gb"), "1048576k" or "4096" (bytes) in bytes: limits.memory and
    limits.output, for every backend."""
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    value = text.strip().lower().removesuffix("b")
    if value and value[-1] in units:
        return int(value[:-1]) * units[value[-1]]
    return int(value)


@dataclass(frozen=True)
class Interpreter:
    """A platform's Python built by builder from pinned sources into an OS package of its family
    (`interpreter:` in matrix.yaml): the runtime image installs that package, and so do the servers."""

    package: str  # the OS package's name, e.g. python27-local
    release: str  # the package's release: bump it to rebuild the same sources
    prefix: str  # where it installs, e.g. /usr/local
    python: Pin  # the interpreter's source tarball
    openssl: Pin | None = None  # a private OpenSSL built into the same prefix (Python 2.7 on OpenSSL 3 systems)
    configure: tuple[str, ...] = ()  # Python's configure flags, after --prefix
    modules: tuple[str, ...] = ()  # standard-library modules the package's test imports
    location: str = ""

    @property
    def pins(self) -> tuple[Pin, ...]:
        return (self.python,) if self.openssl is None else (self.python, self.openssl)

    @property
    def version(self) -> str:
        return self.python.version


@dataclass(frozen=True)
class Engine:
    """The Docker engine a docker platform's images and guests are on (`docker_host:` or
    `docker_context:` in matrix.yaml); the default one (DOCKER_HOST, else the local socket)
    when neither is given. Cells of platforms on different engines run side by side, `-j` each."""

    host: str | None = None  # unix:///path, tcp://HOST:PORT (with tls) or ssh://[USER@]HOST[:PORT]
    tls: Path | None = None  # tcp: the folder of the client's ca.pem, cert.pem and key.pem
    context: str | None = None  # a `docker context` name, read by the docker SDK
    location: str = field(default="", compare=False)  # "matrix.yaml:12: platforms[1].docker_host", for errors

    @property
    def label(self) -> str:
        if self.host:
            return self.host
        return f"docker context {self.context}" if self.context else "the default Docker engine"


@dataclass(frozen=True)
class Platform:
    name: str
    backend: BackendName
    family: Family
    python: str  # the interpreter inside the guest, e.g. /usr/bin/python2.7
    base: Base | None  # docker platforms; None for vagrant
    image_dir: Path  # images/<name>/ (docker): holds the Dockerfile and its context
    tools: tuple[Pin, ...] = ()  # e.g. virtualenv for Python 2.7 guests, pip for wheel tests
    # Files fetched and verified on the host, then put in the image build context (a Python
    # source tarball for CentOS): image builds download nothing unverified.
    context: tuple[Pin, ...] = ()
    enabled: bool = True
    limits: Limits = Limits()
    machines: tuple[str, str] | None = None  # vagrant: (build machine, runtime machine)
    location: str = ""
    interpreter: Interpreter | None = None  # built by builder into an OS package (docker platforms)
    engine: Engine = Engine()  # where its images are made and its guests run (docker platforms)


@dataclass(frozen=True)
class Folders:
    """The three folders builder writes (from settings): what a function that only reads or
    writes files under them is given, rather than the whole matrix."""

    output: Path = Path("eggs")  # published artifacts: output/<platform>/
    cache: Path = Path(".builder/cache")  # sources and tools by sha256, prepared environments
    work: Path = Path(".builder/work")  # per-cell state and logs, base image roots


@dataclass(frozen=True)
class Settings:
    index_url: str | None = None  # None: pip's configured index, else pip's default
    debian_mirror: str | None = None  # None: debootstrap's own default
    registry_mirror: str | None = None  # prefix for registry bases, e.g. "mirror.example:5000/"
    output: Path = Path("eggs")
    cache: Path = Path(".builder/cache")
    work: Path = Path(".builder/work")
    # The private key (or, where builder only verifies, the public key) that signs each
    # platform's manifest.json; None: manifests are not signed (see builder/output/signing.py).
    signing_key: Path | None = None
    signing_key_from: str = ""  # where it was set, for errors: "matrix.yaml:4: settings.signing_key"

    @property
    def folders(self) -> Folders:
        return Folders(self.output, self.cache, self.work)


# -- deploy targets (the deploy: part) --------------------------------------------------------

HookName = Literal["out", "stop", "start", "smoke", "in"]
# In the order a host goes through them: out of the balancer, stop, (switch), start, smoke test, back in.
HOOKS: tuple[HookName, ...] = ("out", "stop", "start", "smoke", "in")


@dataclass(frozen=True)
class Hook:
    command: str  # {host}, {hostname}, {port}, {release}, {root} are substituted
    where: Literal["local", "remote"]


@dataclass(frozen=True)
class Batch:
    size: int
    percent: bool = False

    def split(self, hosts: tuple[Destination, ...]) -> list[tuple[Destination, ...]]:
        """`1`: one host at a time; `50%`: half of the pool at a time (at least one)."""
        per = max(1, len(hosts) * self.size // 100) if self.percent else self.size
        return [hosts[i:i + per] for i in range(0, len(hosts), per)]

    def __str__(self) -> str:
        return f"{self.size}%" if self.percent else str(self.size)


@dataclass(frozen=True)
class Target:
    name: str
    platform: str
    hosts: tuple[Destination, ...]
    root: str  # on each host, e.g. /srv/myapp
    python: str  # on each host
    app: Path  # the application's source tree, or its sdist
    requirements: tuple[str, ...]
    format: Format = "egg"
    hooks: Mapping[HookName, Hook] = field(default_factory=dict)
    batch: Batch = Batch(1)
    keep: int = 5
    location: str = ""


@dataclass(frozen=True)
class Matrix:
    path: Path
    settings: Settings
    platforms: tuple[Platform, ...]
    packages: tuple[Package, ...]
    targets: tuple[Target, ...] = ()  # deploy:
    label: str = "matrix.yaml"  # the file as the user named it (`cases/x.yaml`), for messages

    @property
    def root(self) -> Path:
        return self.path.parent

    def platform(self, name: str) -> Platform:
        return next(p for p in self.platforms if p.name == name)

    def package(self, name: str) -> Package:
        return next(p for p in self.packages if p.name == name)

"""Which OS package provides a file, per family: the commands built, the tools' output read, the
package chosen. The engine is faked (what yum, rpm and apt-file print is recorded text in their
own formats); the Red Hat owners script runs for real in sh, against stand-ins for ldconfig and rpm."""
from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from builder.add import derive, words
from builder.errors import ImageError
from builder.machines import engine, provides
from builder.machines.provides import Found, Query
from builder.matrix import load as config

REPO = Path(__file__).resolve().parents[2]

# `yum -C provides '*/include/*libpq-fe.h' '*/libpq.so' '*/libpq.a' '*/include/*ffi.h'` on CentOS 6
# (yum 3.2.29): a block per package and arch, the summary wrapped, one Filename line per file;
# an epoch before the name; a debuginfo package from a debug repository; an installed one.
YUM_CENTOS6 = """\
postgresql-devel-8.4.20-8.el6_9.i686 : PostgreSQL development header files and
                                     : libraries
Repo        : updates
Matched from:
Filename    : /usr/include/libpq-fe.h
Filename    : /usr/lib/libpq.so



postgresql-devel-8.4.20-8.el6_9.x86_64 : PostgreSQL development header files
                                       : and libraries
Repo        : updates
Matched from:
Filename    : /usr/include/libpq-fe.h
Filename    : /usr/lib64/libpq.so



postgresql-debuginfo-8.4.20-8.el6_9.x86_64 : Debug information for package
                                           : postgresql
Repo        : debug
Matched from:
Filename    : /usr/src/debug/postgresql-8.4.20/src/interfaces/libpq/libpq-fe.h



libffi-devel-3.0.5-3.2.el6.x86_64 : Development files for libffi
Repo        : base
Matched from:
Filename    : /usr/lib64/libffi-3.0.5/include/ffi.h



1:openssl-devel-1.0.1e-57.el6.x86_64 : Files for development of applications
                                     : which will use OpenSSL
Repo        : installed
Matched from:
Other       : Provides-match: */include/*ffi.h
Filename    : /usr/include/openssl/buffer.h



"""

# `yum -C provides '*/libpq.so.5' '*/libyaml-0.so.2'` on CentOS 5 (yum 3.2.22: i386, not i686).
YUM_CENTOS5 = """\
postgresql-libs-8.1.23-10.el5_10.i386 : The shared libraries required for any
                                      : PostgreSQL clients.
Repo        : updates
Matched from:
Filename    : /usr/lib/libpq.so.5



postgresql-libs-8.1.23-10.el5_10.x86_64 : The shared libraries required for any
                                        : PostgreSQL clients.
Repo        : updates
Matched from:
Filename    : /usr/lib64/libpq.so.5



postgresql84-libs-8.4.20-3.el5_11.x86_64 : The shared libraries required for
                                         : any PostgreSQL clients
Repo        : updates
Matched from:
Filename    : /usr/lib64/libpq.so.5



"""


def _platforms() -> dict[str, Any]:
    return {p.name: p for p in config.load(REPO / "matrix.yaml").platforms}


class FakeEngine:
    """What lookup_image and search ask of the engine, answered from recorded text."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, output: str, code: int = 0) -> None:
        self.output, self.code = output, code
        self.images = {"centos:6": "sha256:base6", "centos:5": "sha256:base5", "builder/base:bookworm": "sha256:deb12"}
        self.built: list[tuple[str, str, dict[str, str]]] = []  # (target or dockerfile text, tag, args)
        self.ran: list[tuple[str, list[str]]] = []
        monkeypatch.setattr(engine, "client", lambda where=engine.DEFAULT: self)
        monkeypatch.setattr(engine, "image_id", lambda client, ref: self.images.get(ref))
        monkeypatch.setattr(engine, "build_image", self._build_image)
        monkeypatch.setattr(engine, "image_from_text", self._from_text)
        monkeypatch.setattr(engine, "run_once", self._run_once)

    def _build_image(self, client: Any, platform: Any, context: Path, target: str, tag: str, args: dict[str, str]) -> str:
        self.built.append((target, tag, dict(args)))
        return f"sha256:{target}-of-{args['BASE']}"

    def _from_text(self, client: Any, text: str, tag: str, args: dict[str, str], what: str) -> str:
        self.built.append((text, tag, dict(args)))
        return "sha256:lookup"

    def _run_once(self, client: Any, image: str, argv: Sequence[str], timeout: float = 300) -> tuple[int, str]:
        self.ran.append((image, list(argv)))
        return self.code, self.output


def test_yum_provides_output_is_read_into_each_file_s_package_and_arch() -> None:
    found = provides.parse_yum_provides(YUM_CENTOS6)
    assert found == [
        Found("postgresql-devel", "/usr/include/libpq-fe.h", "i686"),
        Found("postgresql-devel", "/usr/lib/libpq.so", "i686"),
        Found("postgresql-devel", "/usr/include/libpq-fe.h", "x86_64"),
        Found("postgresql-devel", "/usr/lib64/libpq.so", "x86_64"),
        Found("postgresql-debuginfo", "/usr/src/debug/postgresql-8.4.20/src/interfaces/libpq/libpq-fe.h", "x86_64"),
        Found("libffi-devel", "/usr/lib64/libffi-3.0.5/include/ffi.h", "x86_64"),
        Found("openssl-devel", "/usr/include/openssl/buffer.h", "x86_64"),  # the epoch is not the name
    ]
    assert provides.parse_yum_provides("No Matches found\n") == []


def test_red_hat_queries_are_globs_as_wide_as_the_regex_that_narrows_them() -> None:
    log = "\n".join([
        "psycopg/psycopg.h:34:10: fatal error: libpq-fe.h: No such file or directory",
        "/usr/bin/ld: cannot find -lpq",
        "sh: pg_config: command not found",
        "Package libffi was not found in the pkg-config search path.",
        "src/lxml/includes/etree_defs.h:14:10: fatal error: libxml/xmlversion.h: No such file or directory",
    ])
    lacks = {m.name: m for m in words.missing(log)}
    queries = {name: m.query("redhat") for name, m in lacks.items()}
    assert queries["libpq-fe.h"].globs == ("*/include/*libpq-fe.h",)
    assert queries["pq"].globs == ("*/libpq.so", "*/libpq.a")
    assert queries["pg_config"].globs == ("*bin/pg_config",)
    assert queries["libffi"].globs == ("*/pkgconfig/libffi.pc",)
    assert queries["libxml/xmlversion.h"].globs == ("*/include/*libxml/xmlversion.h",)
    # Files where CentOS ships them: each glob takes it, and the regex keeps it.
    paths = {"libpq-fe.h": "/usr/include/libpq-fe.h", "pq": "/usr/lib64/libpq.so", "pg_config": "/usr/bin/pg_config",
             "libffi": "/usr/lib64/pkgconfig/libffi.pc", "libxml/xmlversion.h": "/usr/include/libxml2/libxml/xmlversion.h"}
    for name, path in paths.items():
        assert any(fnmatchcase(path, g) for g in queries[name].globs), name
        assert re.search(queries[name].regex, path), name
    # What a glob takes too widely, the regex drops.
    assert fnmatchcase("/usr/share/doc/libpq.so", "*/libpq.so") and not re.search(queries["pq"].regex, "/usr/share/doc/libpq.so")
    assert not re.search(queries["libpq-fe.h"].regex, "/usr/include/mylibpq-fe.h")
    # Debian's queries are the regexes apt-file always took, with no globs.
    assert lacks["pq"].query("debian") == Query("/lib/(x86_64-linux-gnu/)?libpq\\.(so|a)$")
    assert provides.glob_literal("a[1]*?.h") == "a[[]1[]][*][?].h"


def test_red_hat_prefers_devel_never_debuginfo_and_x86_64_over_its_32_bit_twin() -> None:
    found = provides.parse_yum_provides(YUM_CENTOS6)
    header = provides.match(found, {"h": Query("/libpq-fe\\.h$")})["h"]  # wider than add asks: the debuginfo's too
    assert {f.package for f in header} == {"postgresql-devel", "postgresql-debuginfo"}
    assert provides.best(header, prefer_dev=True, family="redhat") == "postgresql-devel"
    assert provides.best([f for f in header if f.package.endswith("-debuginfo")], prefer_dev=True, family="redhat") is None
    # A shorter name that only an i686 package has loses to the x86_64 one; alone, it is named.
    twins = [Found("libpq", "/usr/lib/libpq.so.5", "i686"), Found("postgresql-libs", "/usr/lib64/libpq.so.5", "x86_64")]
    assert provides.best(twins, prefer_dev=False, family="redhat") == "postgresql-libs"
    assert provides.best(twins[:1], prefer_dev=False, family="redhat") == "libpq"
    assert provides.best([Found("python-devel", "/usr/bin/x", "noarch"), Found("x", "/usr/bin/x", "i686")],
                         prefer_dev=True, family="redhat") == "python-devel"
    # -devel, not Debian's -dev, is what "a package for build-time files" means there.
    assert provides.best([Found("libyaml", "/usr/lib64/libyaml-0.so.2", "x86_64"),
                          Found("libyaml-devel", "/usr/lib64/libyaml.so", "x86_64")], prefer_dev=True, family="redhat") == "libyaml-devel"


def test_debian_choice_is_unchanged() -> None:
    found = [Found("libpq-dev", "/usr/include/postgresql/libpq-fe.h"), Found("postgresql-server-dev-15", "/usr/x/libpq-fe.h"),
             Found("libpq5-dbgsym", "/usr/lib/debug/x"), Found("lib32z1-dev", "/usr/lib32/libz.so")]
    assert provides.best(found, prefer_dev=True) == "libpq-dev"
    assert provides.best(found[2:], prefer_dev=True) is None
    assert provides.best([Found("libpq5", "/usr/lib/x86_64-linux-gnu/libpq.so.5"), Found("libpq-dev", "/x")],
                         prefer_dev=False) == "libpq5"
    lines = "libpq-dev: /usr/include/postgresql/libpq-fe.h\nlibpq5: /usr/lib/x86_64-linux-gnu/libpq.so.5\n"
    assert provides.parse_apt_file(lines) == [Found("libpq-dev", "/usr/include/postgresql/libpq-fe.h"),
                                              Found("libpq5", "/usr/lib/x86_64-linux-gnu/libpq.so.5")]
    queries = {"a": Query("/include/(.+/)?libpq-fe\\.h$"), "b": Query("/lib/(x86_64-linux-gnu/)?libpq\\.(so|a)$")}
    assert provides.search_argv("debian", queries) == [
        "apt-file", "search", "--regexp", "(/include/(.+/)?libpq-fe\\.h|/lib/(x86_64-linux-gnu/)?libpq\\.(so|a))$"]


def test_centos_look_up_image_is_made_on_the_platform_s_os_stage_then_asked_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeEngine(monkeypatch, YUM_CENTOS6)
    centos6 = _platforms()["centos6"]
    assert provides.supported(centos6)
    lacks = words.missing("fatal error: libpq-fe.h: No such file or directory\n/usr/bin/ld: cannot find -lpq\n")
    found = provides.search(centos6, {str(m): m.query("redhat") for m in lacks})
    # images/centos declares its repositories (the vault) in its `os` stage: the look-up starts there.
    (target, os_tag, os_args), (text, tag, args) = fake.built
    assert (target, os_tag, os_args) == ("os", "builder/lookup:centos6-os", {"BASE": "centos:6"})
    assert "yum -y makecache" in text and "apt" not in text
    assert args == {"BASE": "sha256:os-of-centos:6"} and re.fullmatch(r"builder/lookup:centos-6-[0-9a-f]{12}", tag)
    assert fake.ran == [("sha256:lookup", ["yum", "-C", "--noplugins", "provides",
                                           "*/include/*libpq-fe.h", "*/libpq.so", "*/libpq.a"])]
    # The debuginfo's copy (under /usr/src/debug/.../interfaces/) is not an include directory's.
    assert {f.package for f in found["header libpq-fe.h"]} == {"postgresql-devel"}
    assert found["library pq"] == [Found("postgresql-devel", "/usr/lib/libpq.so", "i686"),
                                   Found("postgresql-devel", "/usr/lib64/libpq.so", "x86_64")]
    assert provides.best(found["library pq"], prefer_dev=True, family="redhat") == "postgresql-devel"
    # A registry mirror names the base as the docker backend pulled it.
    fake.images["mirror.example:5000/centos:6"] = fake.images.pop("centos:6")
    fake.built.clear()
    provides.search(centos6, {"x": Query("/x$", ("*/x",))}, registry_mirror="mirror.example:5000/")
    assert fake.built[0][2] == {"BASE": "mirror.example:5000/centos:6"}
    with pytest.raises(ImageError, match="no base image centos:6"):
        provides.search(centos6, {"x": Query("/x$", ("*/x",))})


def test_a_failing_yum_is_an_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeEngine(monkeypatch, "Error: Cannot retrieve repository metadata (repomd.xml)\n", code=2)
    with pytest.raises(ImageError, match=r"centos5: yum provides failed \(exit 2\).*repomd"):
        provides.search(_platforms()["centos5"], {"x": Query("/x$", ("*/x",))})


def test_soname_packages_on_centos5_name_the_x86_64_library_package(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeEngine(monkeypatch, YUM_CENTOS5)
    answer = provides.soname_packages(_platforms()["centos5"], ["libpq.so.5", "libyaml-0.so.2"])
    assert fake.ran[0][1] == ["yum", "-C", "--noplugins", "provides", "*/libpq.so.5", "*/libyaml-0.so.2"]
    assert answer == {"libpq.so.5": "postgresql-libs"}  # shorter than postgresql84-libs; not its i386 twin


def test_debian_look_up_is_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeEngine(monkeypatch, "libpq5: /usr/lib/x86_64-linux-gnu/libpq.so.5\nlibpq5-dbgsym: /usr/lib/debug/libpq.so.5\n")
    answer = provides.soname_packages(_platforms()["debian12"], ["libpq.so.5"])
    [(text, tag, args)] = fake.built
    assert "apt-file update" in text and args == {"BASE": "builder/base:bookworm"}
    assert re.fullmatch(r"builder/lookup:bookworm-[0-9a-f]{12}", tag)
    assert fake.ran == [("sha256:lookup", ["apt-file", "search", "--regexp", "(/libpq\\.so\\.5)$"])]
    assert answer == {"libpq.so.5": "libpq5"}


def test_which_platforms_are_looked_up_and_what_the_others_are_told(monkeypatch: pytest.MonkeyPatch) -> None:
    platforms = _platforms()
    assert [n for n, p in platforms.items() if provides.supported(p)] == ["debian11-py27", "debian12-py27", "debian12",
                                                                          "centos5", "centos6"]
    assert "a vagrant platform of the freebsd family" in provides.unsupported(platforms["freebsd"])
    assert "write its system.freebsd lists by hand" in provides.unsupported(platforms["freebsd"])
    said: list[str] = []
    matrix = config.load(REPO / "matrix.yaml")
    chosen = derive._pick_platforms(matrix, ["centos*", "freebsd"], said.append)
    assert [p.name for p in chosen] == ["centos5", "centos6"]
    assert said == [f"[freebsd] left out: {provides.unsupported(platforms['freebsd'])}"]
    assert provides.compiler_package(platforms["centos6"], "g++") == "gcc-c++"
    assert provides.compiler_package(platforms["debian12"], "g++") == "g++"


def test_owners_and_installed_ask_rpm_on_red_hat(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeEngine(monkeypatch, "found libpq.so.5 /usr/lib64/libpq.so.5 postgresql-libs\nmissing libgone.so.1\n")
    owned = provides.owners("sha256:build", ["libpq.so.5", "libgone.so.1"], family="redhat")
    assert owned == {"libpq.so.5": ("/usr/lib64/libpq.so.5", "postgresql-libs"), "libgone.so.1": ("", None)}
    assert "rpm -qf --qf '%{NAME}\\n'" in fake.ran[0][1][2] and "dpkg" not in fake.ran[0][1][2]
    fake.output = "glibc\npostgresql-libs\n\nbash\n"
    assert provides.installed("sha256:runtime", family="redhat") == {"glibc", "postgresql-libs", "bash"}
    assert fake.ran[1][1] == ["rpm", "-qa", "--qf", "%{NAME}\\n"]
    provides.installed("sha256:runtime")
    assert fake.ran[2][1] == ["dpkg-query", "-W", "-f", "${Package}\\n"]


# `ldconfig -p` of a CentOS 6 x86_64 build image with the i686 twin of a library installed too.
LDCONFIG = """\
312 libs found in cache `/etc/ld.so.cache'
\tlibz.so.1 (libc6) => /lib/libz.so.1
\tlibz.so.1 (libc6,x86-64) => /lib64/libz.so.1
\tlibpq.so.5 (libc6,x86-64) => /usr/lib64/libpq.so.5
\tlibloose.so.1 (libc6,x86-64) => /usr/local/lib/libloose.so.1
"""


def test_the_red_hat_owners_script_prefers_the_x86_64_path_and_reads_rpm(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ldconfig").write_text(f"#!/bin/sh\ncat <<'EOF'\n{LDCONFIG}EOF\n")
    # rpm -qf: the owner's name, or "file ... is not owned by any package" and exit 1.
    (bin_dir / "rpm").write_text("""#!/bin/sh
case "$4" in
  /lib64/libz.so.1) echo zlib ;;
  /lib/libz.so.1) echo zlib-i686-wrong ;;
  /usr/lib64/libpq.so.5) echo postgresql-libs ;;
  *) echo "file $4 is not owned by any package"; exit 1 ;;
esac
""")
    for tool in ("ldconfig", "rpm"):
        os.chmod(bin_dir / tool, 0o755)
    result = subprocess.run(["sh", "-c", provides._OWNERS["redhat"], "sh", "libloose.so.1", "libmissing.so.9", "libpq.so.5",
                             "libz.so.1"], capture_output=True, text=True, env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
                            check=True)
    assert provides.parse_owners(result.stdout) == {
        "libloose.so.1": ("/usr/local/lib/libloose.so.1", None),
        "libmissing.so.9": ("", None),
        "libpq.so.5": ("/usr/lib64/libpq.so.5", "postgresql-libs"),
        "libz.so.1": ("/lib64/libz.so.1", "zlib"),
    }


def _failed_probe(tmp_path: Path, platform: Any, log: str) -> tuple[Any, Any, Any, Any]:
    (tmp_path / "build.log").write_text(log)
    cell = SimpleNamespace(platform=platform, id=f"psycopg2-2.8.6-{platform.name}")
    last = SimpleNamespace(stage="build", log=str(tmp_path / "build.log"), reason="build failed")
    run = SimpleNamespace(last=lambda c: last, matrix=SimpleNamespace(settings=SimpleNamespace(registry_mirror=None)))
    one = SimpleNamespace(build=[], evidence=[])
    return cell, run, SimpleNamespace(per={platform.name: one}), one


def test_a_failed_centos_probe_learns_devel_packages_from_yum(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = FakeEngine(monkeypatch, YUM_CENTOS6)
    centos6 = _platforms()["centos6"]
    cell, run, derived, one = _failed_probe(tmp_path, centos6, "\n".join([
        "In file included from psycopg/psycopgmodule.c:27:",
        "./psycopg/psycopg.h:34:22: error: libpq-fe.h: No such file or directory",  # gcc 4.4: not `fatal error:`
        "gcc: error trying to exec 'cc1plus': execvp: No such file or directory",
    ]))
    assert derive._learn(cell, run, derived, derive.Target(centos6), lambda line: None) is True
    assert one.build == ["postgresql-devel", "gcc-c++"]
    assert fake.ran[0][1] == ["yum", "-C", "--noplugins", "provides", "*/include/*libpq-fe.h"]
    assert "header libpq-fe.h" in one.evidence[0] and "-> postgresql-devel (/usr/include/libpq-fe.h)" in one.evidence[0]


def test_a_file_no_centos_package_provides_names_the_globs_asked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    FakeEngine(monkeypatch, "No Matches found\n")
    centos5 = _platforms()["centos5"]
    cell, run, derived, _ = _failed_probe(tmp_path, centos5, "x.c:1:10: fatal error: nothere.h: No such file or directory\n")
    with pytest.raises(derive.AddError, match=r"no package of centos5 provides header nothere\.h .*searched centos5's "
                                              r"yum's file lists for \*/include/\*nothere\.h"):
        derive._learn(cell, run, derived, derive.Target(centos5), lambda line: None)

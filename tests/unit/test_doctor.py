"""The host check (doctor) and stale releases: host.py's real answers on this machine, the
comparison of every field, the roll stopping before anything is copied, and a release whose
interpreter changed (the real servers are in tests/e2e/test_doctor.py)."""
from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from builder.deploy import doctor, roll
from builder.errors import HostMismatch
from builder.machines.ssh import Destination
from builder.matrix.model import Batch
from builder.output import fingerprint

from .test_deploy_roll import LocalConnection, make_target

HOST_PY = Path(__file__).resolve().parents[2] / "builder" / "server" / "host.py"


def host_module() -> Any:
    spec = importlib.util.spec_from_file_location("builder_host_script", HOST_PY)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


IMAGE: dict[str, Any] = fingerprint.document("debian11-py27", "sha256:runtime", {
    "os": {"family": "debian", "id": "debian", "release": "11", "name": "Debian GNU/Linux 11 (bullseye)", "arch": "x86_64"},
    "libc": {"name": "glibc", "version": "2.31"},
    "python": {"path": "/usr/bin/python2.7", "binary": "/usr/bin/python2.7", "version": "2.7.18", "abi": "cp27mu",
               "unicode": "wide", "sha256": "a" * 64},
    "packages": {"libpq5": {"version": "13.16-0+deb11u1", "sonames": ["libpq.so.5"]},
                 "libyaml-0-2": {"version": "0.2.2-1", "sonames": ["libyaml-0.so.2"]}},
})
WANT = doctor.Expected("debian11-py27", IMAGE, {"libpq5": ("psycopg2",), "libyaml-0-2": ("PyYAML",)})


def answer(**changes: Any) -> dict[str, Any]:
    """The image's own answer, with `changes` (part.key=value as part__key)."""
    found = copy.deepcopy({k: IMAGE[k] for k in ("os", "libc", "python", "packages")})
    for key, value in changes.items():
        part, _, field = key.partition("__")
        if field:
            found[part][field] = value
        else:
            found[part] = value
    return found


def test_a_host_that_is_the_runtime_image_passes_without_a_word() -> None:
    assert doctor.compare(WANT, "web1", answer()).findings == []


@pytest.mark.parametrize(("changes", "said"), [
    ({"os__release": "12", "os__name": "Debian GNU/Linux 12 (bookworm)"},
     "web2 runs Debian GNU/Linux 12 (bookworm) (debian 12), not debian 11 as debian11-py27's runtime image"),
    ({"os__arch": "aarch64"}, "web2 is aarch64, debian11-py27's runtime image is x86_64"),
    ({"libc__version": "2.28"}, "glibc 2.28 on web2 is older than debian11-py27's runtime image's 2.31: an extension may need a newer symbol"),
    ({"python__version": "2.7.16"}, "the Python at /usr/bin/python2.7 on web2 is 2.7.16, debian11-py27's is 2.7.18"),
    ({"python__abi": "cp27m", "python__unicode": "narrow"},
     "the Python at /usr/bin/python2.7 on web2 has ABI cp27m (narrow unicode), debian11-py27's has cp27mu (wide unicode)"),
    ({"packages": {"libyaml-0-2": IMAGE["packages"]["libyaml-0-2"], "libpq5": None}},
     "libpq5 is not installed on web2: it provides libpq.so.5 for psycopg2; install it, e.g. with the Puppet class from "
     "`python -m builder system-packages --platform debian11-py27 --format puppet`"),
])
def test_each_difference_that_breaks_artifacts_is_refused_naming_host_difference_and_fix(changes: dict[str, Any],
                                                                                        said: str) -> None:
    verdict = doctor.compare(WANT, "web2", answer(**changes))
    assert len(verdict.refusals) == 1 and verdict.refusals[0].startswith(said), verdict.refusals
    assert verdict.warnings == []


@pytest.mark.parametrize(("changes", "said"), [
    ({"libc__version": "2.36"}, "glibc 2.36 on web3 is newer than debian11-py27's runtime image's 2.31"),
    ({"packages": {**IMAGE["packages"], "libpq5": {"version": "13.22-0+deb11u1", "sonames": ["libpq.so.5"]}}},
     "libpq5 on web3 is 13.22-0+deb11u1, newer than the runtime image's 13.16-0+deb11u1"),
    ({"packages": {**IMAGE["packages"], "libpq5": {"version": "13.9-0+deb11u1", "sonames": ["libpq.so.5"]}}},
     "libpq5 on web3 is 13.9-0+deb11u1, older than the runtime image's 13.16-0+deb11u1"),  # dpkg's order, not text's
    ({"python__sha256": "b" * 64}, "the Python at /usr/bin/python2.7 on web3 is another binary than the runtime image's"),
])
def test_what_still_works_is_a_warning(changes: dict[str, Any], said: str) -> None:
    verdict = doctor.compare(WANT, "web3", answer(**changes))
    assert verdict.refusals == [] and len(verdict.warnings) == 1 and verdict.warnings[0].startswith(said), verdict.warnings


def test_a_package_no_artifact_of_the_release_needs_is_not_asked_for() -> None:
    want = doctor.Expected("debian11-py27", IMAGE, {"libyaml-0-2": ("PyYAML",)})
    assert doctor.compare(want, "web1", answer(packages={"libyaml-0-2": IMAGE["packages"]["libyaml-0-2"]})).findings == []


BUILT = doctor.system.Interpreter("python27-local", "2.7.18-1", "python27-local_2.7.18-1_amd64.deb", "c" * 64, ("libc6",))
WANT_BUILT = doctor.Expected("debian11-py27", IMAGE, {"libpq5": ("psycopg2",)}, interpreter=BUILT)


def _with_interpreter(version: str | None) -> dict[str, Any]:
    facts = None if version is None else {"version": version, "sonames": []}
    return answer(packages={**IMAGE["packages"], "python27-local": facts})


def test_a_host_without_the_interpreter_package_builder_built_is_refused_whatever_its_python_says() -> None:
    assert doctor.compare(WANT_BUILT, "web4", _with_interpreter("2.7.18-1")).findings == []
    verdict = doctor.compare(WANT_BUILT, "web4", _with_interpreter(None))  # same version, ABI and binary: not the package
    assert verdict.refusals == [
        "python27-local is not installed on web4: debian11-py27's Python is builder's package python27-local 2.7.18-1, "
        "and the Python at /usr/bin/python2.7 there is another build; install os/python27-local_2.7.18-1_amd64.deb from "
        "the platform's output folder first (`python -m builder system-packages --platform debian11-py27` says how)"]
    other = doctor.compare(WANT_BUILT, "web4", _with_interpreter("2.7.18-2"))
    assert other.refusals == [] and other.warnings == [
        "python27-local on web4 is 2.7.18-2, newer than the published 2.7.18-1"]
    assert "from builder's package python27-local 2.7.18-1" in doctor.describe(WANT_BUILT)


def test_host_py_answers_every_question_here_and_the_answer_is_a_valid_fingerprint() -> None:
    host = host_module()
    found = host.cmd_fingerprint(None, ["libc6", "no-such-package-here"])["fingerprint"]
    doc = fingerprint.check(fingerprint.document("p", "r", found), "here")
    assert doc["python"]["path"] == sys.executable and doc["python"]["version"] == "%d.%d.%d" % sys.version_info[:3]
    assert doc["python"]["abi"].startswith("cpython-3") and len(doc["python"]["sha256"]) == 64
    assert doc["libc"]["name"] == "glibc" and doc["libc"]["version"].startswith("2.")
    assert doc["packages"]["no-such-package-here"] is None
    assert "libc.so.6" in doc["packages"]["libc6"]["sonames"] and doc["packages"]["libc6"]["version"]


def test_fingerprint_json_missing_or_damaged_is_said_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    with pytest.raises(Exception, match="fingerprint.json does not exist.*") as missing:
        fingerprint.read(tmp_path, "p")
    assert "--skip-doctor" in str(missing.value)
    bad = copy.deepcopy(IMAGE)
    del bad["libc"]["version"]
    (tmp_path / "p" / "fingerprint.json").write_text(json.dumps({**bad, "platform": "p"}))
    with pytest.raises(Exception, match="libc.version is missing"):
        fingerprint.read(tmp_path, "p")


def test_a_refusal_stops_the_batch_before_anything_is_copied(tmp_path: Path) -> None:
    target = make_target(tmp_path / "srv", tmp_path / "hooks.log")
    target = type(target)(**{**target.__dict__, "batch": Batch(3)})  # one batch of three
    worked: list[Destination] = []

    def check(host: roll.Host) -> None:
        if host.dest.host == "h2":
            host.step = "doctor"
            raise HostMismatch("libpq5 is not installed on h2: it provides libpq.so.5 for psycopg2")

    def work(host: roll.Host) -> roll.Outcome:
        worked.append(host.dest)
        return roll.Outcome(host.dest, "deployed")

    with pytest.raises(HostMismatch) as refused:
        roll.roll(target, work, lambda line: None, connect=LocalConnection, check=check)  # type: ignore[arg-type]
    assert worked == []
    assert refused.value.exit_code == 12
    assert "failed: h2 (step doctor): libpq5 is not installed on h2" in refused.value.message
    assert "not started: h1, h3" in refused.value.message


def _release(root: Path, name: str, interpreter: dict[str, Any]) -> None:
    (root / "releases" / name).mkdir(parents=True)
    (root / "releases" / name / "release.json").write_text(json.dumps(
        {"release": name, "fingerprint": name, "created": "2026-01-01T00:00:00Z", "interpreter": interpreter}))


def test_a_release_made_with_another_interpreter_is_stale_and_rollback_refuses_it(tmp_path: Path) -> None:
    host = host_module()
    now = host.interpreter_facts()
    root = tmp_path / "srv"
    _release(root, "v1", {**now, "sha256": "0" * 64})
    _release(root, "v2", now)
    _release(root, "v3", {**now, "abi": "cp27m"})
    status = host.cmd_status(host.Root(str(root)))
    assert sorted(status["stale"]) == ["v1", "v3"]
    assert "the interpreter there has changed (binary sha256 000000000000, now" in status["stale"]["v1"]
    assert "ABI cp27m, now " + now["abi"] in status["stale"]["v3"]
    # Made before interpreters were recorded: judged by the version it says.
    (root / "releases" / "old").mkdir()
    (root / "releases" / "old" / "release.json").write_text(json.dumps({"release": "old", "fingerprint": "o",
                                                                        "python": "2.7.18"}))
    assert "made with Python 2.7.18" in host.cmd_status(host.Root(str(root)))["stale"]["old"]

    target = make_target(root, tmp_path / "hooks.log")
    said: list[str] = []
    with pytest.raises(Exception, match="release v1 is stale: .*rollback does not switch to it"):
        roll.rollback_host(roll.Host(LocalConnection(Destination("h1")), target, said.append), "v1")  # type: ignore[arg-type]
    assert not (root / "current").exists()
    roll.releases(type(target)(**{**target.__dict__, "hosts": (Destination("h1"),)}), said.append,
                  connect=LocalConnection)  # type: ignore[arg-type]
    assert "v1 (stale: made with" in said[-1] and "v2," in said[-1], said[-1]


def test_publish_writes_the_runtime_images_fingerprint_beside_the_manifest(tmp_path: Path) -> None:
    from builder.matrix.load import loads
    from builder.matrix.plan import runtime_packages

    from .test_system_packages import publish_everything, shipped_project

    matrix_path = shipped_project(tmp_path)
    publish_everything(matrix_path, ("debian11-py27",))
    doc = fingerprint.read(tmp_path / "eggs", "debian11-py27")
    matrix = loads(matrix_path.read_text(), matrix_path)
    # The image was asked about every run-time package it was given (here: this machine answered).
    assert sorted(doc["packages"]) == sorted(runtime_packages(matrix, matrix.platform("debian11-py27")))
    assert doc["runtime_image"] == "r" and doc["python"]["path"] == sys.executable
    kept = json.loads((tmp_path / ".builder" / "work" / "images" / "debian11-py27.fingerprint.json").read_text())
    assert kept["document"] == doc  # asked once per runtime image, kept by its id

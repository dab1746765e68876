"""publish on real files: layout, determinism, indexes read by a real pip, verify, the lock
across processes, and a real SIGKILL at every step of a publish followed by recover()."""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from packaging.version import Version

from builder.errors import BuilderError, LockError
from builder.output import journal as _journal
from builder.output.publish import PublishRecord, output_lock, publish, read_manifest, recover, verify

from .archives import make_zip

REPO = Path(__file__).resolve().parents[2]


def make_wheel(folder: Path, project: str, version: str, payload: bytes = b"X = 1\n") -> Path:
    """A minimal valid pure-Python wheel (what `pip wheel` makes, without needing `wheel`)."""
    module = project.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    members = {
        f"{module}.py": payload,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    lines = [f"{name},sha256={hashlib.sha256(data).hexdigest()},{len(data)}" for name, data in members.items()]
    members[f"{info}/RECORD"] = ("\n".join([*lines, f"{info}/RECORD,,"]) + "\n").encode()
    return make_zip(folder / f"{module}-{version}-py3-none-any.whl", members)


def make_egg(folder: Path, project: str, version: str, payload: bytes = b"X = 1\n") -> Path:
    pkg_info = f"Metadata-Version: 1.0\nName: {project}\nVersion: {version}\n".encode()
    members = {"EGG-INFO/PKG-INFO": pkg_info, "m.py": payload}
    return make_zip(folder / f"{project}-{version}-py2.7-linux-x86_64.egg", members)


def record(cell: str, package: str, version: str, artifacts: list[Path], platform: str = "p") -> PublishRecord:
    return PublishRecord(
        cell_id=cell, package=package, version=version, platform=platform, artifacts=tuple(artifacts),
        source_sha256="5" * 64, input_key=f"key-{cell}-{version}", build_image="sha256:b", runtime_image="sha256:r",
        builder_version="0.1.0", finished_at="2026-01-02T03:04:05Z",
    )


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*")) if path.is_file()
    }


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "BUILDER_"))}
    return {**env, "PYTHONPATH": str(REPO), **extra}


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self.meta: dict[str, str] = {}
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a":
            self._href = values["href"]
        if tag == "meta" and values.get("name"):
            self.meta[str(values["name"])] = str(values.get("content"))

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self.links.append((self._href, data))
            self._href = None


def links_of(path: Path) -> Links:
    parser = Links()
    parser.feed(path.read_text())
    return parser


# -- layout, manifest, history --------------------------------------------------------------


def test_layout_manifest_and_readme_untouched(tmp_path: Path) -> None:
    out = tmp_path / "eggs"
    out.mkdir()
    (out / "README.md").write_text("ours\n")
    egg = make_egg(tmp_path / "work", "PyYAML", "5.4.1")
    wheel = make_wheel(tmp_path / "work", "PyYAML", "5.4.1")
    published = publish(out, "p", [record("p/pyyaml", "PyYAML", "5.4.1", [egg, wheel])])

    assert published == sorted([out / "p" / egg.name, out / "p" / wheel.name])
    assert (out / "README.md").read_text() == "ours\n"
    assert sorted(snapshot(out / "p")) == sorted(
        ["index.html", "manifest.json", "sbom.cdx.json", "simple/index.html", "system-packages.json", "simple/pyyaml/index.html", egg.name,
             wheel.name]
    )
    raw = (out / "p" / "manifest.json").read_text()
    data = json.loads(raw)
    assert raw == json.dumps(data, indent=2, sort_keys=True) + "\n"
    assert data["manifest_version"] == 1 and data["platform"] == "p"
    assert data["artifacts"][egg.name] == {
        "sha256": sha(egg), "size": egg.stat().st_size, "format": "egg", "package": "PyYAML", "version": "5.4.1",
        "cell": "p/pyyaml", "source_sha256": "5" * 64, "input_key": "key-p/pyyaml-5.4.1",
        "build_image": "sha256:b", "runtime_image": "sha256:r", "builder_version": "0.1.0",
        "finished_at": "2026-01-02T03:04:05Z",
    }
    assert data["artifacts"][wheel.name]["format"] == "wheel"
    assert data["cells"] == {"p/pyyaml": {
        "package": "PyYAML", "version": "5.4.1", "input_key": "key-p/pyyaml-5.4.1",
        "artifacts": sorted([egg.name, wheel.name]), "finished_at": "2026-01-02T03:04:05Z",
    }}
    manifest = read_manifest(out, "p")
    assert manifest is not None and manifest.artifacts[egg.name].sha256 == sha(egg)
    assert manifest.cells["p/pyyaml"].artifacts == tuple(sorted([egg.name, wheel.name]))
    assert read_manifest(out, "other") is None
    assert verify(out) == []
    assert (out / ".lock").read_text() == ""  # released, and no churn for a committed folder


def test_output_is_byte_identical_whatever_the_order(tmp_path: Path) -> None:
    work = tmp_path / "work"
    records = [
        record("p/a", "a", "1.0", [make_egg(work, "a", "1.0"), make_wheel(work, "a", "1.0")]),
        record("p/b", "b", "2.0", [make_wheel(work, "b", "2.0")]),
        record("p/c", "c", "3.0", [make_egg(work, "c", "3.0")]),
    ]
    publish(tmp_path / "one", "p", records)
    publish(tmp_path / "two", "p", list(reversed(records)))
    one, two = tmp_path / "one" / "p", tmp_path / "two" / "p"
    assert snapshot(one) == snapshot(two)
    for name in snapshot(one):
        assert (one / name).read_bytes() == (two / name).read_bytes()


def test_republish_keeps_history_and_replaces_same_name(tmp_path: Path) -> None:
    out = tmp_path / "out"
    old_egg = make_egg(tmp_path / "v1", "a", "1.0", b"old")
    same_v1 = make_egg(tmp_path / "v1", "b", "1.0", b"first build")
    publish(out, "p", [record("p/a", "a", "1.0", [old_egg]), record("p/b", "b", "1.0", [same_v1])])
    new_egg = make_egg(tmp_path / "v2", "a", "2.0", b"new")
    same_v2 = make_egg(tmp_path / "v2", "b", "1.0", b"second build")
    publish(out, "p", [record("p/a", "a", "2.0", [new_egg]), record("p/b", "b", "1.0", [same_v2])])

    manifest = read_manifest(out, "p")
    assert manifest is not None
    assert sorted(manifest.artifacts) == sorted([old_egg.name, new_egg.name, same_v2.name])
    assert manifest.artifacts[old_egg.name].version == "1.0"
    assert manifest.cells["p/a"].version == "2.0" and manifest.cells["p/a"].artifacts == (new_egg.name,)
    assert (out / "p" / same_v2.name).read_bytes() == same_v2.read_bytes()
    assert manifest.artifacts[same_v2.name].sha256 == sha(same_v2)
    assert verify(out) == []


def test_file_taken_over_by_another_cell_leaves_the_old_cell(tmp_path: Path) -> None:
    out = tmp_path / "out"
    egg = make_egg(tmp_path / "w", "a", "1.0")
    publish(out, "p", [record("p/a", "a", "1.0", [egg])])
    publish(out, "p", [record("p/a-again", "a", "1.0", [egg])])
    manifest = read_manifest(out, "p")
    assert manifest is not None
    assert manifest.cells["p/a"].artifacts == () and manifest.cells["p/a-again"].artifacts == (egg.name,)
    assert manifest.artifacts[egg.name].cell == "p/a-again"


@pytest.mark.parametrize(
    ("platform", "name", "problem"),
    [
        ("other", "a-1.0-py2.7.egg", "is for platform"),
        ("p", "a-1.0.tar.gz", "neither an egg nor a wheel"),
        ("p", "not-a-wheel.whl", "not a valid wheel name"),
        ("../p", "a-1.0-py2.7.egg", "cannot be a folder"),
    ],
)
def test_refuses_what_it_cannot_publish(tmp_path: Path, platform: str, name: str, problem: str) -> None:
    artifact = tmp_path / "w" / name
    artifact.parent.mkdir()
    artifact.write_bytes(b"x")
    with pytest.raises(BuilderError, match=problem):
        publish(tmp_path / "out", platform, [record("p/a", "a", "1.0", [artifact])])
    assert not (tmp_path / "out" / "p").exists()


def test_refuses_missing_and_clashing_artifacts(tmp_path: Path) -> None:
    egg = make_egg(tmp_path / "w", "a", "1.0")
    with pytest.raises(BuilderError, match="is missing"):
        publish(tmp_path / "out", "p", [record("p/a", "a", "1.0", [tmp_path / "gone-1.0-py2.7.egg"])])
    with pytest.raises(BuilderError, match="produced by both"):
        publish(tmp_path / "out", "p", [record("p/a", "a", "1.0", [egg]), record("p/b", "a", "1.0", [egg])])


def test_refuses_to_publish_over_an_unreadable_manifest(tmp_path: Path) -> None:
    (tmp_path / "out" / "p").mkdir(parents=True)
    (tmp_path / "out" / "p" / "manifest.json").write_text("{not json")
    with pytest.raises(BuilderError, match="not a valid manifest"):
        publish(tmp_path / "out", "p", [record("p/a", "a", "1.0", [make_egg(tmp_path / "w", "a", "1.0")])])
    assert (tmp_path / "out" / "p" / "manifest.json").read_text() == "{not json"


# -- index pages ------------------------------------------------------------------------------


def test_index_pages_list_exactly_the_artifacts(tmp_path: Path) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    egg = make_egg(work, "PyYAML", "5.4.1")
    wheels = [make_wheel(work, "PyYAML", "5.4.1"), make_wheel(work, "Markup.Safe", "1.1.1")]
    publish(out, "p", [record("p/pyyaml", "PyYAML", "5.4.1", [egg, wheels[0]]),
                       record("p/ms", "Markup.Safe", "1.1.1", [wheels[1]])])
    folder = out / "p"

    flat = links_of(folder / "index.html")
    expected = sorted((f"{p.name}#sha256={sha(p)}", p.name) for p in [egg, *wheels])
    assert flat.links == expected

    root = links_of(folder / "simple" / "index.html")
    assert root.links == [("markup-safe/", "markup-safe"), ("pyyaml/", "pyyaml")]
    for project, wheel in [("pyyaml", wheels[0]), ("markup-safe", wheels[1])]:
        page = folder / "simple" / project / "index.html"
        assert page.read_text().startswith("<!DOCTYPE html>")
        assert links_of(page).meta == {"pypi:repository-version": "1.0"}
        assert links_of(page).links == [(f"../../{wheel.name}#sha256={sha(wheel)}", wheel.name)]
    assert links_of(folder / "simple" / "index.html").meta == {"pypi:repository-version": "1.0"}


def build_tiny_wheel(tmp_path: Path) -> Path:
    source, dest = tmp_path / "src", tmp_path / "dist"
    source.mkdir()
    (source / "tiny_pkg.py").write_text("X = 1\n")
    (source / "setup.py").write_text(
        "from setuptools import setup\n\n"
        "setup(name='tiny-pkg', version='1.0', py_modules=['tiny_pkg'])\n"
    )
    # setuptools makes wheels by itself from 70.1 on; before, it needs the `wheel` package.
    setuptools = Version(importlib.metadata.version("setuptools"))
    if setuptools < Version("70.1") and importlib.util.find_spec("wheel") is None:
        return make_wheel(dest, "tiny-pkg", "1.0")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "--no-index", "-w", str(dest),
         str(source)],
        check=True, capture_output=True, env=child_env(PIP_CONFIG_FILE=os.devnull), timeout=120,
    )
    return next(dest.glob("tiny_pkg-1.0-*.whl"))


def pip_download(args: list[str], dest: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-cache-dir", "--disable-pip-version-check", "--dest", str(dest),
         *args, "tiny-pkg==1.0"],
        check=True, capture_output=True, env=child_env(PIP_CONFIG_FILE=os.devnull), timeout=120,
    )
    (found,) = dest.iterdir()
    return found


def test_real_pip_finds_the_wheel_through_both_indexes(tmp_path: Path) -> None:
    wheel = build_tiny_wheel(tmp_path)
    egg = make_egg(tmp_path / "w", "tiny_pkg", "1.0")
    out = tmp_path / "out"
    publish(out, "p", [record("p/tiny-pkg", "tiny-pkg", "1.0", [egg, wheel])])

    flat = pip_download(["--no-index", "--find-links", str(out / "p" / "index.html")], tmp_path / "d1")
    simple = pip_download(["--index-url", (out / "p" / "simple").as_uri()], tmp_path / "d2")
    assert flat.name == simple.name == wheel.name
    assert sha(flat) == sha(simple) == sha(wheel)


# -- verify -----------------------------------------------------------------------------------


def test_verify_reports_every_kind_of_problem(tmp_path: Path) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    eggs = [make_egg(work, name, "1.0") for name in ("a", "b")]
    publish(out, "p", [record("p/a", "a", "1.0", [eggs[0]]), record("p/b", "b", "1.0", [eggs[1]])])
    publish(out, "q", [record("q/a", "a", "1.0", [eggs[0]], platform="q")])
    assert verify(out) == []

    (out / "p" / eggs[0].name).write_bytes(b"changed")
    (out / "p" / eggs[1].name).unlink()
    (out / "p" / "stray-1.0-py3-none-any.whl").write_bytes(b"?")
    (out / "p" / "stray-1.0.tar.gz").write_bytes(b"?")
    (out / "q" / "manifest.json").write_text('{"manifest_version": 1}')
    found = {(p.path.relative_to(out).as_posix(), p.kind) for p in verify(out)}
    assert found == {
        (f"p/{eggs[0].name}", "tampered"),
        (f"p/{eggs[1].name}", "missing"),
        ("p/stray-1.0-py3-none-any.whl", "unlisted"),
        ("p/stray-1.0.tar.gz", "unlisted"),
        ("q/manifest.json", "bad-manifest"),
    }


def test_verify_flags_an_edited_index_and_an_interrupted_publish(tmp_path: Path) -> None:
    out = tmp_path / "out"
    publish(out, "p", [record("p/a", "a", "1.0", [make_egg(tmp_path / "w", "a", "1.0")])])
    (out / "p" / "index.html").write_text("<a href='evil.egg'>a</a>")
    (out / "p" / _journal.JOURNAL).write_text("{}")
    found = {(p.path.name, p.kind) for p in verify(out)}
    assert found == {("index.html", "tampered"), (_journal.JOURNAL, "bad-manifest")}


# -- crash safety -----------------------------------------------------------------------------

CHILD_PUBLISH = """
import json, sys
from pathlib import Path
from builder.output.publish import PublishRecord, publish
spec = json.loads(Path(sys.argv[1]).read_text())
records = [PublishRecord(**{**r, "artifacts": tuple(Path(a) for a in r["artifacts"])}) for r in spec["records"]]
publish(Path(spec["output"]), "p", records)
"""


@pytest.fixture(scope="module")
def crash_scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[PublishRecord], dict[str, str]]:
    """An output folder already published once, the next publish, and the state it leads to."""
    root = tmp_path_factory.mktemp("scene")
    v1, v2 = root / "v1", root / "v2"
    before = root / "before"
    publish(before, "p", [
        record("p/a", "a", "1.0", [make_egg(v1, "a", "1.0"), make_wheel(v1, "a", "1.0")]),
        record("p/b", "b", "1.0", [make_egg(v1, "b", "1.0", b"first build")]),
    ])
    # a new version, a same-named file with new bytes, a new project; the big egg spans chunks,
    # so a crash while copying leaves a truly partial file.
    big = os.urandom(3 * (1 << 20) // 2)
    records = [
        record("p/a", "a", "2.0", [make_egg(v2, "a", "2.0", big), make_wheel(v2, "a", "2.0")]),
        record("p/b", "b", "1.0", [make_egg(v2, "b", "1.0", b"second build")]),
        record("p/c", "c", "0.1", [make_wheel(v2, "c", "0.1")]),
    ]
    after = root / "after"
    shutil.copytree(before, after)
    publish(after, "p", records)
    return before, records, snapshot(after / "p")


def run_child(script: str, args: list[str], crash_at: str | None) -> subprocess.CompletedProcess[str]:
    extra = {"BUILDER_PUBLISH_CRASH_AT": crash_at} if crash_at else {}
    return subprocess.run([sys.executable, "-c", script, *args], env=child_env(**extra), capture_output=True,
                          text=True, timeout=60)


def crashed_publish(tmp_path: Path, scene: tuple[Path, list[PublishRecord], dict[str, str]], step: str) -> Path:
    before, records, _ = scene
    out = tmp_path / "out"
    shutil.copytree(before, out)
    spec = {"output": str(out), "records": [{**r.__dict__, "artifacts": [str(a) for a in r.artifacts]}
                                             for r in records]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    done = run_child(CHILD_PUBLISH, [str(tmp_path / "spec.json")], step)
    assert done.returncode == -signal.SIGKILL, done.stderr
    return out


def assert_consistent(out: Path) -> dict[str, str]:
    state = snapshot(out / "p")
    assert not [name for name in state if ".tmp-" in name or _journal.JOURNAL in name]
    assert verify(out) == []  # hashes in the manifest match the files, indexes match the manifest
    return state


@pytest.mark.parametrize("step", _journal.CRASH_STEPS)
def test_sigkill_at_every_step_then_recover(
    tmp_path: Path, crash_scene: tuple[Path, list[PublishRecord], dict[str, str]], step: str
) -> None:
    before, _, after = crash_scene
    out = crashed_publish(tmp_path, crash_scene, step)
    if step == "copying":
        partial = [p for p in (out / "p").iterdir() if ".tmp-" in p.name]
        assert partial and partial[0].stat().st_size == 1 << 20  # one chunk of the big egg, no more
    if _journal.CRASH_STEPS.index(step) < _journal.CRASH_STEPS.index("renamed-all"):
        # manifest.json is replaced last, so until then readers still see the old, true one
        assert sha(out / "p" / "manifest.json") == sha(before / "p" / "manifest.json")
    did = recover(out)
    state = assert_consistent(out)
    journaled = _journal.CRASH_STEPS.index(step) >= _journal.CRASH_STEPS.index("journaled")
    if step == "done":
        assert state == after and did == []
    elif journaled:
        assert state == after and any("finished" in line for line in did)
    else:
        assert state == snapshot(before / "p")
        assert did == [] if step == "start" else any("removed" in line for line in did)
    assert recover(out) == []  # idempotent


CHILD_RECOVER = "import sys; from pathlib import Path; from builder.output.publish import recover; recover(Path(sys.argv[1]))"


@pytest.mark.parametrize("step", ["renamed-one", "renamed-artifacts", "renamed-all"])
def test_sigkill_while_recovering_then_recover_again(
    tmp_path: Path, crash_scene: tuple[Path, list[PublishRecord], dict[str, str]], step: str
) -> None:
    out = crashed_publish(tmp_path, crash_scene, "journaled")
    done = run_child(CHILD_RECOVER, [str(out)], step)
    assert done.returncode == -signal.SIGKILL, done.stderr
    recover(out)
    assert assert_consistent(out) == crash_scene[2]


def test_recover_refuses_a_journal_whose_files_are_gone(
    tmp_path: Path, crash_scene: tuple[Path, list[PublishRecord], dict[str, str]]
) -> None:
    out = crashed_publish(tmp_path, crash_scene, "journaled")
    for path in (out / "p").glob(".*.egg.tmp-*"):
        path.unlink()
    with pytest.raises(BuilderError, match="cannot be finished"):
        recover(out)
    assert (out / "p" / _journal.JOURNAL).exists()  # left for a human, nothing half-undone


# -- the lock ---------------------------------------------------------------------------------

CHILD_LOCK = """
import sys
from pathlib import Path
from builder.output.publish import output_lock
with output_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_lock_across_processes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    child = subprocess.Popen([sys.executable, "-c", CHILD_LOCK, str(out)], env=child_env(), text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == "locked\n"
        holder = json.loads((out / ".lock").read_text())
        assert holder["pid"] == child.pid and holder["host"] and holder["started"] and holder["command"]

        with pytest.raises(LockError, match=f"is being published by pid {child.pid} .*wait for it, or stop it"):
            with output_lock(out, wait=False):
                pass
        started = time.monotonic()
        with pytest.raises(LockError):
            with output_lock(out, timeout=0.3):
                pass
        assert time.monotonic() - started >= 0.3

        acquired = threading.Event()

        def wait_for_it() -> None:
            with output_lock(out):
                acquired.set()

        waiter = threading.Thread(target=wait_for_it)
        waiter.start()
        assert not acquired.wait(0.3)  # blocks, silently, while the other process holds it
        assert child.stdin is not None
        child.stdin.close()
        waiter.join(10)
        assert acquired.is_set()
    finally:
        child.kill()
        child.wait()
    assert (out / ".lock").read_text() == ""


def test_publish_and_recover_inside_the_callers_lock(tmp_path: Path) -> None:
    out = tmp_path / "out"
    egg = make_egg(tmp_path / "w", "a", "1.0")
    with output_lock(out, wait=False):
        publish(out, "p", [record("p/a", "a", "1.0", [egg])])
        assert recover(out) == []
        assert verify(out) == []
        assert json.loads((out / ".lock").read_text())["pid"] == os.getpid()

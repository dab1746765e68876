"""check-imports' host side without Docker: requirements files, artifacts' metadata, choosing and
verifying published artifacts, and the report. (The real thing is tests/e2e/test_check_imports.py.)"""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from builder.errors import ConfigError, NotPublished
from builder.imports import check as imports
from builder.matrix import load as config
from builder.output import published
from builder.output.publish import PublishRecord, publish

from .archives import make_zip

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "imports"


def egg(folder: Path, project: str, version: str, top: str, requires: str = "", python: str = "2.7") -> Path:
    members = {"EGG-INFO/PKG-INFO": f"Name: {project}\nVersion: {version}\n", f"{top}/__init__.py": "",
               "EGG-INFO/top_level.txt": f"{top}\n"}
    if requires:
        members["EGG-INFO/requires.txt"] = requires
    return make_zip(folder / f"{project}-{version}-py{python}-linux-x86_64.egg", members)


def wheel(folder: Path, project: str, version: str, files: list[str], requires: list[str] = (), tag: str = "py3") -> Path:
    info = f"{project}-{version}.dist-info"
    metadata = f"Name: {project}\nVersion: {version}\n" + "".join(f"Requires-Dist: {r}\n" for r in requires)
    record = "".join(f"{name},,\n" for name in files) + f"{info}/METADATA,,\n{info}/RECORD,,\n"
    members = dict.fromkeys(files, "") | {f"{info}/METADATA": metadata, f"{info}/RECORD": record}
    return make_zip(folder / f"{project}-{version}-{tag}-none-any.whl", members)


def put(output: Path, platform: str, package: str, version: str, *files: Path) -> None:
    cell = f"{platform}/{package.lower()}-{version}"
    publish(output, platform, [PublishRecord(
        cell_id=cell, package=package, version=version, platform=platform, artifacts=tuple(files),
        source_sha256="5" * 64, input_key=f"key-{cell}", build_image="sha256:b", runtime_image="sha256:r",
        builder_version="0.1.0", finished_at="2026-01-02T03:04:05Z",
    )])


@pytest.fixture
def matrix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> config.Matrix:
    """The shipped matrix with its output in a temporary folder holding a few fake artifacts,
    loaded as `--matrix matrix.yaml` names it (so hints say matrix.yaml)."""
    text = (REPO / "matrix.yaml").read_text().replace("output: eggs", f"output: {tmp_path / 'eggs'}")
    (tmp_path / "matrix.yaml").write_text(text)
    (tmp_path / "images").symlink_to(REPO / "images")
    monkeypatch.chdir(tmp_path)
    loaded = config.load("matrix.yaml")
    out, built = loaded.settings.output, tmp_path / "built"
    put(out, "debian11-py27", "python-dateutil", "2.8.2",
        egg(built, "python_dateutil", "2.8.2", "dateutil", "six>=1.5\n\n[:python_version < \"3\"]\nfuture_thing\n"
            "[test]\npytest\n"))
    put(out, "debian11-py27", "six", "1.16.0", egg(built, "six", "1.16.0", "six"))
    put(out, "debian11-py27", "six", "1.15.0", egg(built, "six", "1.15.0", "six"))
    put(out, "debian11-py27", "PyYAML", "5.4.1", egg(built, "PyYAML", "5.4.1", "yaml"),
        wheel(built, "PyYAML", "5.4.1", ["yaml/__init__.py", "_yaml.so"], tag="cp27"))
    put(out, "debian11-py27", "MarkupSafe", "1.1.1", wheel(built, "MarkupSafe", "1.1.1", ["markupsafe/__init__.py"], tag="cp27"))
    put(out, "debian11-py27", "simplejson", "3.19.3", egg(built, "simplejson", "3.19.3", "simplejson", python="3.11"))
    return loaded


# --- requirements files ------------------------------------------------------------------------

def test_requirements_files_are_read_like_pip_reads_them(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text("six==1.16.0  # pinned\n")
    (tmp_path / "req.txt").write_text(
        "# the application's needs\n\nPyYAML==5.4.1 \\\n    --hash=sha256:abc\n-r base.txt\n"
        "cdecimal; python_version < '3'\n")
    found = published.parse_requirements(tmp_path / "req.txt")
    assert [(where.split("/")[-1], str(req)) for where, req in found] == [
        ("req.txt:3", "PyYAML==5.4.1"), ("base.txt:1", "six==1.16.0"), ("req.txt:6", 'cdecimal; python_version < "3"'),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("six\n-e ./lib\n", "req.txt:2: option -e is not supported here"),
        ("six\nnot a requirement!\n", "req.txt:2: not a requirement: 'not a requirement!'"),
        ("-r req.txt\n", "includes itself through -r"),
    ],
)
def test_bad_requirements_files_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "req.txt").write_text(text)
    with pytest.raises(ConfigError) as caught:
        published.parse_requirements(tmp_path / "req.txt")
    assert message in caught.value.message


# --- what is published -------------------------------------------------------------------------

def test_artifacts_say_what_they_provide_and_need(matrix: config.Matrix) -> None:
    found = {a.filename: a for a in published.load(matrix, "debian11-py27")}
    dateutil = found["python_dateutil-2.8.2-py2.7-linux-x86_64.egg"]
    assert dateutil.top_level == ("dateutil",)  # top_level.txt
    # requires.txt: plain lines, [:marker] sections kept with their marker, [extra] sections left out.
    assert dateutil.requires == ("six>=1.5", 'future_thing; python_version < "3"')
    assert found["PyYAML-5.4.1-cp27-none-any.whl"].top_level == ("_yaml", "yaml")  # from RECORD
    assert set(published.providers(list(found.values()))) == {"dateutil", "six", "yaml", "_yaml", "markupsafe", "simplejson"}


def test_an_artifact_changed_after_publishing_is_refused(matrix: config.Matrix) -> None:
    path = matrix.settings.output / "debian11-py27" / "six-1.16.0-py2.7-linux-x86_64.egg"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(NotPublished) as caught:
        published.load(matrix, "debian11-py27")
    assert "six-1.16.0-py2.7-linux-x86_64.egg does not match its manifest" in caught.value.message


def test_copy_verified_refuses_bytes_that_changed_since_load(matrix: config.Matrix, tmp_path: Path) -> None:
    six = next(a for a in published.load(matrix, "debian11-py27") if a.filename.startswith("six-1.16.0"))
    assert published.copy_verified(six, tmp_path / "in" / six.filename).read_bytes() == six.path.read_bytes()
    six.path.write_bytes(b"changed")
    with pytest.raises(NotPublished):
        published.copy_verified(six, tmp_path / "again" / six.filename)
    assert not (tmp_path / "again" / six.filename).exists()


def test_nothing_published_says_how_to_publish(matrix: config.Matrix) -> None:
    with pytest.raises(NotPublished) as caught:
        published.load(matrix, "debian12")
    assert caught.value.hint == "build and publish its packages: python -m builder all --platform debian12"


def reqs(*lines: str) -> list:
    from packaging.requirements import Requirement

    return [(f"req.txt:{n}", Requirement(line)) for n, line in enumerate(lines, 1)]


def test_requirements_resolve_through_each_artifacts_metadata(matrix: config.Matrix) -> None:
    artifacts = published.load(matrix, "debian11-py27")
    # future_thing applies only below Python 3: on 3.x the dateutil egg needs six alone... but
    # this egg is for 2.7, so on 2.7 its marker holds and future_thing is missing.
    with pytest.raises(NotPublished) as caught:
        published.resolve(matrix, "debian11-py27", artifacts, reqs("python-dateutil"), "egg", "2.7.18")
    assert "future_thing; python_version < \"3\" (needed by python-dateutil 2.8.2): no published artifact" in caught.value.message
    assert "declare future-thing in matrix.yaml's packages" in caught.value.hint
    chosen = published.resolve(matrix, "debian11-py27", [a for a in artifacts if a.package != "python-dateutil"],
                               reqs("six", "PyYAML==5.4.1"), "egg", "2.7.18")
    assert sorted(a.filename for a in chosen) == ["PyYAML-5.4.1-py2.7-linux-x86_64.egg", "six-1.16.0-py2.7-linux-x86_64.egg"]
    assert published.resolve(matrix, "debian11-py27", artifacts, reqs("six<1.16"), "egg", "2.7.18")[0].version == "1.15.0"
    assert published.resolve(matrix, "debian11-py27", artifacts, reqs("cdecimal; python_version >= '3'"), "egg", "2.7.18") == []


@pytest.mark.parametrize(
    ("line", "why", "hint"),
    [
        ("requests==2.31.0", "requests==2.31.0 (needed by req.txt:2): no published artifact",
         "declare requests in matrix.yaml's packages, then: python -m builder all --package requests --platform debian11-py27"),
        ("six==1.17.0", "six==1.17.0 (needed by req.txt:2): published versions are 1.15.0, 1.16.0",
         "python -m builder all --package six --platform debian11-py27"),
        ("MarkupSafe", "MarkupSafe (needed by req.txt:2): published only as wheel, not as egg",
         "python -m builder all --package MarkupSafe --platform debian11-py27"),
        ("simplejson", "simplejson (needed by req.txt:2): no published egg of it is for Python 2.7",
         "python -m builder all --package simplejson --platform debian11-py27"),
    ],
)
def test_an_unpublished_requirement_is_refused_naming_it(matrix: config.Matrix, line: str, why: str, hint: str) -> None:
    artifacts = published.load(matrix, "debian11-py27")
    with pytest.raises(NotPublished) as caught:
        published.resolve(matrix, "debian11-py27", artifacts, reqs("PyYAML", line), "egg", "2.7.18")
    assert caught.value.message == why and caught.value.hint == hint and caught.value.exit_code == 11


def test_without_requirements_the_newest_usable_version_of_everything(matrix: config.Matrix) -> None:
    artifacts = published.load(matrix, "debian11-py27")
    assert sorted(a.filename for a in published.newest(artifacts, "egg", "2.7.18")) == [
        "PyYAML-5.4.1-py2.7-linux-x86_64.egg", "python_dateutil-2.8.2-py2.7-linux-x86_64.egg",
        "six-1.16.0-py2.7-linux-x86_64.egg",
    ]
    assert sorted(a.filename for a in published.newest(artifacts, "wheel", "2.7.18")) == [
        "MarkupSafe-1.1.1-cp27-none-any.whl", "PyYAML-5.4.1-cp27-none-any.whl",
    ]


# --- the report ----------------------------------------------------------------------------------

def test_each_failure_names_its_place_error_and_expected_provider(matrix: config.Matrix) -> None:
    artifacts = published.load(matrix, "debian11-py27")
    chosen = [a for a in artifacts if a.filename.startswith(("PyYAML-5.4.1-py", "six-1.16"))]
    entry = {"file": "app.py", "name": None, "optional": False}
    scan = {
        "python": "2.7.18", "files": 3, "own": [{}],
        "imports": [dict(entry, line=1, statement="import yaml", module="yaml", spec="yaml"),
                    dict(entry, line=2, statement="from yaml import CSafeLoader", module="yaml", spec="yaml:CSafeLoader"),
                    dict(entry, line=3, statement="import redis", module="redis", spec="redis"),
                    dict(entry, line=4, statement="import dateutil.tz", module="dateutil.tz", spec="dateutil.tz")],
        "optional": [dict(entry, line=6, statement="import cdecimal", module="cdecimal", spec="cdecimal")],
        "problems": [{"file": "old.py", "line": 7, "error": "SyntaxError: invalid syntax"}],
    }
    tried = {
        "yaml": {"ok": True},
        "yaml:CSafeLoader": {"ok": False, "error_type": "ImportError", "error": "cannot import name CSafeLoader"},
        "redis": {"ok": False, "error_type": "ImportError", "error": "No module named redis"},
        "dateutil.tz": {"ok": False, "error_type": "ImportError", "error": "No module named dateutil.tz"},
        "cdecimal": {"ok": False, "error_type": "ImportError", "error": "No module named cdecimal"},
    }
    report = imports._report(Path("/src/app"), "debian11-py27", scan, tried, artifacts, chosen, True, "egg")
    assert not report.ok and report.tried == 5 and report.own == 1
    assert [(f.where, f.provider) for f in report.failures] == [
        ("old.py:7", "the application's own code"),
        ("app.py:2", "PyYAML 5.4.1 (PyYAML-5.4.1-py2.7-linux-x86_64.egg)"),
        ("app.py:3", "no published artifact provides it"),
        ("app.py:4", "python-dateutil: published, but not in the requirements"),
    ]
    assert [(f.where, f.provider) for f in report.optional] == [("app.py:6", "no published artifact provides it")]
    lines = imports.render(report)
    row = next(line for line in lines if line.startswith("app.py:3"))
    assert row.split() == ["app.py:3", "import", "redis", "ImportError:", "No", "module", "named", "redis",
                           "no", "published", "artifact", "provides", "it"]
    assert "every import works" not in lines and "1 optional import(s)" in "\n".join(lines)
    assert imports.failed(report).exit_code == 9


# --- the command line, where it stops before any guest --------------------------------------------

def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "builder", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})


def test_cli_refuses_an_unknown_platform_or_a_missing_folder(tmp_path: Path) -> None:
    done = cli("check-imports", str(FIXTURES / "demoapp"), "--platform", "debian13")
    assert done.returncode == 2 and "no platform 'debian13'" in done.stderr and "debian11-py27" in done.stderr
    done = cli("check-imports", str(tmp_path / "nowhere"), "--platform", "debian12")
    assert done.returncode == 1 and "is not a folder" in done.stderr


def test_cli_with_nothing_published_says_how_to_publish(matrix: config.Matrix) -> None:
    done = cli("check-imports", str(FIXTURES / "demoapp"), "--platform", "debian12", "--matrix", str(matrix.path))
    assert done.returncode == 11, done.stderr
    assert "nothing is published for debian12" in done.stderr
    assert "python -m builder all --platform debian12" in done.stderr


# --- the guest side of the environment, on the host's Python ---------------------------------------

def test_appenv_installs_eggs_as_the_test_stage_does_and_tries_with_the_envs_python(tmp_path: Path) -> None:
    import json

    from builder.cells.cell import GUEST_DIR

    artifact = make_zip(tmp_path / "in" / "fakepkg-1.0-py3.11.egg",
                        {"EGG-INFO/PKG-INFO": "Name: fakepkg\n", "fakepkg/__init__.py": "VALUE = 1\n",
                         "fakepkg/sub.py": "import not_installed_anywhere\n"})
    out = tmp_path / "out"
    out.mkdir()
    spec = {"format": "egg", "artifacts": [str(artifact)], "virtualenv": None, "pip": None,
            "work": str(tmp_path / "work"), "out": str(out),
            "try": ["fakepkg", "fakepkg:VALUE", "fakepkg:sub", "fakepkg:nope", "builder"]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    done = subprocess.run([sys.executable, str(GUEST_DIR / "appenv.py"), str(tmp_path / "spec.json")],
                          capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout + done.stderr
    env = json.loads((out / "env-result.json").read_text())
    assert env["ok"] and env["installed"] == [{"artifact": "fakepkg-1.0-py3.11.egg", "how": "unzip + .pth"}]
    results = {r["spec"]: r for r in json.loads((out / "try-result.json").read_text())["results"]}
    assert results["fakepkg"]["ok"] and results["fakepkg:VALUE"]["ok"]
    assert results["fakepkg:sub"]["error"] == "No module named 'not_installed_anywhere'"
    assert results["fakepkg:nope"]["error"] == "cannot import name 'nope' from 'fakepkg'"
    # The environment is fresh: what the host's Python has installed is not in it.
    assert results["builder"]["error_type"] == "ModuleNotFoundError"


def test_a_requirement_nothing_publishes_is_refused_before_any_guest_starts(matrix: config.Matrix, tmp_path: Path) -> None:
    artifacts = published.load(matrix, "debian11-py27")
    published.precheck(matrix, "debian11-py27", artifacts, reqs("six", "redis; python_version < '3'"))  # marker: later
    with pytest.raises(NotPublished) as caught:
        published.precheck(matrix, "debian11-py27", artifacts, reqs("six", "redis>=3", "six-extras"))
    assert caught.value.message == ("redis>=3 (needed by req.txt:2): no published artifact; "
                                    "six-extras (needed by req.txt:3): no published artifact")
    # Through the command line: no Docker engine is asked for anything.
    (tmp_path / "req.txt").write_text("six\nredis>=3\n")
    done = cli("check-imports", str(FIXTURES / "demoapp"), "--platform", "debian11-py27", "--matrix", str(matrix.path),
               "--requirements", str(tmp_path / "req.txt"))
    assert done.returncode == 11 and f"redis>=3 (needed by {tmp_path / 'req.txt'}:2): no published artifact" in done.stderr
    assert "python -m builder all --package redis --platform debian11-py27" in done.stderr
    assert "scanning" not in done.stderr


def test_only_the_modules_of_the_tree_go_to_the_guest(tmp_path: Path) -> None:
    app = tmp_path / "app"
    for rel in ("run.py", "pkg/__init__.py", "pkg/_fast.so", "pkg/data.json", ".git/hooks/x.py",
                "pkg/__pycache__/run.cpython-311.pyc", "docs/conf.py"):
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        (app / rel).write_text("")
    assert imports.stage_app(app, tmp_path / "staged") == 4
    staged = sorted(str(p.relative_to(tmp_path / "staged")) for p in (tmp_path / "staged").rglob("*") if p.is_file())
    assert staged == ["docs/conf.py", "pkg/__init__.py", "pkg/_fast.so", "run.py"]


def test_artifacts_tested_in_another_runtime_image_are_noted(matrix: config.Matrix) -> None:
    artifacts = published.load(matrix, "debian11-py27")
    assert {a.runtime_image for a in artifacts} == {"sha256:r"}
    report = imports.Report("app", "debian11-py27", "2.7.18", 1, 0, 0, ("six-1.16.0-py2.7-linux-x86_64.egg",), (), ())
    assert imports._stale(report, artifacts, "sha256:r") == ()
    [note] = imports._stale(report, artifacts, "sha256:new")
    assert note.startswith("six-1.16.0-py2.7-linux-x86_64.egg were tested in an older runtime image of debian11-py27")
    assert f"note: {note}" in imports.render(dataclasses.replace(report, notes=(note,)))

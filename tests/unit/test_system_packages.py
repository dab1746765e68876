"""system-packages.json and `python -m builder system-packages`: the OS packages a platform's
servers need, written by publish beside the manifest, read back from the published folder and
rendered for Puppet, Ansible, Salt, a shell and JSON. The list must be the runtime image's."""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from builder.cells import pipeline
from builder.cells.state import StageResult
from builder.machines.base import Exec, Images
from builder.matrix.load import loads
from builder.matrix.plan import all_cells, runtime_packages
from builder.output import journal as _journal
from builder.output import system
from builder.output.publish import PublishRecord, publish, recover

from .test_cells import FakeBackend
from .test_publish import child_env, make_egg, make_wheel

REPO = Path(__file__).resolve().parents[2]


def record(cell: str, package: str, version: str, artifacts: list[Path], runtime: tuple[str, ...] | None,
           family: str = "debian", platform: str = "p") -> PublishRecord:
    return PublishRecord(
        cell_id=cell, package=package, version=version, platform=platform, artifacts=tuple(artifacts),
        source_sha256="5" * 64, input_key=f"key-{cell}-{version}", build_image="sha256:b", runtime_image="sha256:r",
        builder_version="0.1.0", finished_at="2026-01-02T03:04:05Z", runtime_packages=runtime, family=family,
    )


def shipped_project(tmp_path: Path) -> Path:
    """The shipped matrix in a project of its own, publishing into tmp_path/eggs."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "images").symlink_to(REPO / "images", target_is_directory=True)
    path = tmp_path / "matrix.yaml"
    path.write_text((REPO / "matrix.yaml").read_text())
    return path


def publish_everything(matrix_path: Path, platforms: tuple[str, ...]) -> None:
    """What `all` publishes when every cell of the platforms passes: the pipeline's publish stage
    on test results as the test stage leaves them (no engine needed)."""
    matrix = loads(matrix_path.read_text(), matrix_path)
    cells = [c for c in all_cells(matrix) if c.platform.name in platforms]
    run = pipeline.Run(matrix, cells, echo=lambda line: None)
    run.keys = {c.id: f"key {c.id}" for c in cells}
    run.images = {name: Images("b", "r") for name in platforms}
    # Publishing asks each runtime image what it is (its fingerprint): this machine answers.
    guests = matrix_path.parent / "guests"
    guests.mkdir(exist_ok=True)
    fake = FakeBackend(guests, lambda out, argv, spec: Exec(1, "no guest"))
    run.backends = {"docker": fake, "vagrant": fake}  # type: ignore[dict-item]
    built = matrix_path.parent / "built"
    for cell in cells:
        folder = built / cell.platform.name
        folder.mkdir(parents=True, exist_ok=True)
        egg = make_egg(folder, cell.package.name.replace("-", "_"), cell.spec.source.version)
        run.results[cell.id] = {"test": StageResult(cell.id, "test", "passed", artifacts=[str(egg)], input_key=run.keys[cell.id],
                                                    images={"build": "b", "runtime": "r"})}
    pipeline.publish(run)


# -- where the list comes from --------------------------------------------------------------


def test_publish_writes_the_runtime_images_packages_beside_the_manifest(tmp_path: Path) -> None:
    matrix_path = shipped_project(tmp_path)
    publish_everything(matrix_path, ("debian11-py27", "debian12", "debian12-vm"))
    matrix = loads(matrix_path.read_text(), matrix_path)
    for platform in ("debian11-py27", "debian12", "debian12-vm"):
        found = system.read(tmp_path / "eggs", platform)
        # Every cell published: exactly what the platform's runtime image is given.
        assert found.packages == runtime_packages(matrix, matrix.platform(platform)), platform
        assert found.family == "debian" and not found.unknown
    py27 = json.loads((tmp_path / "eggs" / "debian11-py27" / "system-packages.json").read_text())
    assert py27["packages"] == ["libpq5", "libyaml-0-2"]
    assert py27["needed_by"]["libpq5"] == [{
        "package": "psycopg2", "version": "2.8.6", "cell": "debian11-py27/psycopg2",
        "artifacts": ["psycopg2-2.8.6-py2.7-linux-x86_64.egg"],
    }]
    assert py27["artifacts"]["six-1.16.0-py2.7-linux-x86_64.egg"]["runtime"] == []
    assert [u["package"] for u in py27["needed_by"]["libyaml-0-2"]] == ["PyYAML"]
    # debian12-vm publishes simplejson and six only: nothing to install there.
    assert system.read(tmp_path / "eggs", "debian12-vm").packages == ()


def test_only_published_cells_count_and_history_keeps_what_old_artifacts_need(tmp_path: Path) -> None:
    out, work = tmp_path / "eggs", tmp_path / "work"
    old = make_egg(work / "1", "a", "1.0")
    publish(out, "p", [record("p/a", "a", "1.0", [old], ("libold1",))])
    assert system.read(out, "p").packages == ("libold1",)
    new, wheel = make_egg(work / "2", "a", "2.0"), make_wheel(work / "2", "a", "2.0")
    publish(out, "p", [record("p/a", "a", "2.0", [new, wheel], ("libnew2", "libnew2", "libc-extra"))])
    found = system.read(out, "p")
    # a 1.0 is still published (the folder keeps history), so what it needs is still needed.
    assert found.packages == ("libc-extra", "libnew2", "libold1")
    assert found.artifacts[old.name].version == "1.0" and found.artifacts[old.name].runtime == ("libold1",)
    assert [u["artifacts"] for u in found.needed_by("libnew2")] == [sorted([new.name, wheel.name])]
    # Another cell published later keeps both.
    publish(out, "p", [record("p/b", "b", "1.0", [make_egg(work / "3", "b", "1.0")], ())])
    assert system.read(out, "p").packages == ("libc-extra", "libnew2", "libold1")


def test_the_file_goes_through_the_journal_and_a_crash_rolls_forward(tmp_path: Path) -> None:
    out, work = tmp_path / "eggs", tmp_path / "work"
    egg = make_egg(work, "a", "1.0")
    script = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
        "from tests.unit.test_system_packages import record; from builder.output.publish import publish;"
        "publish(Path(sys.argv[2]), 'p', [record('p/a', 'a', '1.0', [Path(sys.argv[3])], ('libyaml-0-2',))])"
    )
    done = subprocess.run([sys.executable, "-c", script, str(REPO), str(out), str(egg)],
                          env=child_env(BUILDER_PUBLISH_CRASH_AT="journaled"), capture_output=True, text=True, check=False)
    assert done.returncode == -9, done.stderr
    journal = json.loads((out / "p" / _journal.JOURNAL).read_text())
    finals = [r["final"] for r in journal["renames"]]
    assert "system-packages.json" in finals and finals[-1] == "manifest.json", finals
    assert not (out / "p" / "system-packages.json").exists()
    recover(out)
    assert system.read(out, "p").packages == ("libyaml-0-2",)


def test_artifacts_published_without_a_record_are_unknown_not_silently_dropped(tmp_path: Path) -> None:
    out, work = tmp_path / "eggs", tmp_path / "work"
    publish(out, "p", [record("p/a", "a", "1.0", [make_egg(work, "a", "1.0")], None)])
    publish(out, "p", [record("p/b", "b", "1.0", [make_egg(work, "b", "1.0")], ("libb1",))])
    found = system.read(out, "p")
    assert found.packages == ("libb1",) and dict(found.unknown) == {"a-1.0-py2.7-linux-x86_64.egg": "a"}
    assert "INCOMPLETE" in system.render(found, "shell", "eggs/p/system-packages.json")
    # A broken file is rewritten at the next publish; what it held becomes unknown, and says so.
    (out / "p" / "system-packages.json").write_text("{not json")
    with pytest.raises(system.BuilderError, match="is not JSON"):
        system.read(out, "p")
    publish(out, "p", [record("p/c", "c", "1.0", [make_egg(work, "c", "1.0")], ())])
    assert set(system.read(out, "p").unknown) == {"a-1.0-py2.7-linux-x86_64.egg", "b-1.0-py2.7-linux-x86_64.egg"}


def test_merged_ci_jobs_carry_the_list_too(tmp_path: Path) -> None:
    from builder.output.merge import merge

    part = tmp_path / "job"
    part.mkdir()
    publish_everything(shipped_project(part), ("debian11-py27",))
    matrix_path = shipped_project(tmp_path / "main")
    merge(loads(matrix_path.read_text(), matrix_path), [part], echo=lambda line: None)
    found = system.read(tmp_path / "main" / "eggs", "debian11-py27")
    assert found.packages == ("libpq5", "libyaml-0-2") and not found.unknown
    # And the runtime image's fingerprint the job published, byte for byte.
    job, main = (root / "eggs" / "debian11-py27" / "fingerprint.json" for root in (part, tmp_path / "main"))
    assert main.read_bytes() == job.read_bytes()


# -- the formats ----------------------------------------------------------------------------


def sample(family: str = "debian", platform: str = "debian11-py27") -> system.ServerPackages:
    return system.ServerPackages(platform, family, {
        "psycopg2-2.8.6-py2.7-linux-x86_64.egg": system.Needs("psycopg2", "2.8.6", f"{platform}/psycopg2", ("libpq5",)),
        "PyYAML-5.4.1-py2.7-linux-x86_64.egg": system.Needs("PyYAML", "5.4.1", f"{platform}/pyyaml", ("libyaml-0-2",)),
        "PyYAML-5.4.1-cp27-cp27mu-linux_x86_64.whl": system.Needs("PyYAML", "5.4.1", f"{platform}/pyyaml", ("libyaml-0-2",)),
        "six-1.16.0-py2.7.egg": system.Needs("six", "1.16.0", f"{platform}/six", ()),
    })


SOURCE = "eggs/debian11-py27/system-packages.json"


def test_json_is_the_document_with_who_needs_each_package() -> None:
    data = json.loads(system.render(sample(), "json", SOURCE))
    assert data["platform"] == "debian11-py27" and data["family"] == "debian"
    assert data["packages"] == ["libpq5", "libyaml-0-2"]
    assert data["needed_by"]["libyaml-0-2"] == [{
        "package": "PyYAML", "version": "5.4.1", "cell": "debian11-py27/pyyaml",
        "artifacts": ["PyYAML-5.4.1-cp27-cp27mu-linux_x86_64.whl", "PyYAML-5.4.1-py2.7-linux-x86_64.egg"],
    }]
    assert system.load(system.dump(sample()), SOURCE) == sample()


def test_ansible_is_a_playbook_whose_task_installs_the_list_as_the_image_did() -> None:
    text = system.render(sample(), "ansible", SOURCE)
    [play] = yaml.safe_load(text)
    assert play["hosts"] == "all"
    assert play["vars"]["builder_system_packages"] == ["libpq5", "libyaml-0-2"]
    [task] = play["tasks"]
    assert task["ansible.builtin.package"] == {
        "name": "{{ builder_system_packages }}", "state": "present", "update_cache": True, "install_recommends": False,
    }
    assert "#   libpq5       for psycopg2 2.8.6 (psycopg2-2.8.6-py2.7-linux-x86_64.egg)" in text
    # On other families the package module's backend (yum, pkgng) has no apt options.
    [task] = yaml.safe_load(system.render(sample("redhat", "centos6"), "ansible", SOURCE))[0]["tasks"]
    assert task["ansible.builtin.package"] == {"name": "{{ builder_system_packages }}", "state": "present"}


def test_salt_is_a_pkg_installed_state_with_pkgs() -> None:
    state = yaml.safe_load(system.render(sample(), "salt", SOURCE))
    assert state == {"builder-system-packages-debian11-py27": {"pkg.installed": [
        {"pkgs": ["libpq5", "libyaml-0-2"]}, {"refresh": True}, {"install_recommends": False},
    ]}}
    state = yaml.safe_load(system.render(sample("freebsd", "freebsd"), "salt", SOURCE))
    assert state == {"builder-system-packages-freebsd": {"pkg.installed": [{"pkgs": ["libpq5", "libyaml-0-2"]}]}}


def test_shell_is_one_install_line_by_family() -> None:
    def command(family: str) -> list[str]:
        lines = [line for line in system.render(sample(family), "shell", SOURCE).splitlines() if not line.startswith("#")]
        assert len(lines) == 1, lines
        return shlex.split(lines[0])

    assert command("debian") == ["apt-get", "install", "-y", "--no-install-recommends", "libpq5", "libyaml-0-2"]
    assert command("redhat") == ["yum", "install", "-y", "libpq5", "libyaml-0-2"]
    assert command("freebsd") == ["pkg", "install", "-y", "libpq5", "libyaml-0-2"]


def test_puppet_is_a_class_with_one_package_resource() -> None:
    text = system.render(sample(), "puppet", SOURCE)
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert body == [
        "class builder_system_packages_debian11_py27 {",
        "  package { ['libpq5', 'libyaml-0-2']:",
        "    ensure          => installed,",
        "    install_options => ['--no-install-recommends'],",
        "  }",
        "}",
    ]
    redhat = system.render(sample("redhat", "centos6"), "puppet", SOURCE)
    assert "install_options" not in redhat and "class builder_system_packages_centos6 {" in redhat


def test_nothing_to_install_is_still_valid_in_every_format() -> None:
    empty = system.ServerPackages("debian12-vm", "debian", {"six-1.16.0-py3-none-any.whl": system.Needs("six", "1.16.0", "x/six", ())})
    [play] = yaml.safe_load(system.render(empty, "ansible", SOURCE))
    assert play["vars"]["builder_system_packages"] == []
    assert yaml.safe_load(system.render(empty, "salt", SOURCE)) == {"builder-system-packages-debian12-vm": {"test.nop": []}}
    assert all(line.startswith("#") for line in system.render(empty, "shell", SOURCE).splitlines())
    assert "package {" not in system.render(empty, "puppet", SOURCE)
    assert json.loads(system.render(empty, "json", SOURCE))["packages"] == []


def test_package_globs_keep_what_those_packages_need() -> None:
    assert sample().only(["psycopg*"]).packages == ("libpq5",)
    assert sample().only(["pyyaml", "six"]).packages == ("libyaml-0-2",)  # normalized names match too
    with pytest.raises(system.NotPublished, match="no package published for debian11-py27 matches 'numpy'") as caught:
        sample().only(["numpy"])
    assert caught.value.hint and "psycopg2" in caught.value.hint


# -- the command ----------------------------------------------------------------------------


def cli(matrix: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "builder", "system-packages", *args, "--matrix", str(matrix)],
                          cwd=matrix.parent, env=child_env(), capture_output=True, text=True, timeout=120, check=False)


def test_the_command_reads_the_published_folder(tmp_path: Path) -> None:
    matrix_path = shipped_project(tmp_path)
    publish_everything(matrix_path, ("debian12",))
    done = cli(matrix_path, "--platform", "debian12", "--format", "shell")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "apt-get install -y --no-install-recommends libpq5 libyaml-0-2"
    assert "(eggs/debian12/system-packages.json)" in done.stdout and done.stderr == ""
    only = cli(matrix_path, "--platform", "debian12", "--format", "json", "--package", "psycopg2")
    assert json.loads(only.stdout)["packages"] == ["libpq5"]
    none = cli(matrix_path, "--platform", "debian12", "--package", "numpy")
    assert none.returncode == 11 and "no package published for debian12 matches 'numpy'" in none.stderr


def test_the_command_says_when_nothing_is_published(tmp_path: Path) -> None:
    matrix_path = shipped_project(tmp_path)
    done = cli(matrix_path, "--platform", "debian11-py27")
    assert done.returncode == 11, done.stderr
    assert "nothing is published for debian11-py27" in done.stderr
    assert "python -m builder all --platform debian11-py27" in done.stderr and done.stdout == ""
    typo = cli(matrix_path, "--platform", "debian13")
    assert typo.returncode == 2 and "no platform 'debian13'" in typo.stderr and "debian11-py27" in typo.stderr


def test_a_folder_published_before_the_file_existed_says_how_to_get_it(tmp_path: Path) -> None:
    matrix_path = shipped_project(tmp_path)
    publish_everything(matrix_path, ("debian12",))
    (tmp_path / "eggs" / "debian12" / "system-packages.json").unlink()
    done = cli(matrix_path, "--platform", "debian12")
    assert done.returncode == 11 and "did not record the OS packages" in done.stderr
    assert "python -m builder all --platform debian12 --force" in done.stderr


# -- the interpreter package builder built (interpreter: in the matrix) ------------------------

SHA = "d" * 64
DEB = "python27-local_2.7.18-1_amd64.deb"


def with_interpreter(family: str = "debian") -> system.ServerPackages:
    depends = ("libc6", "libffi8") if family == "debian" else ()
    built = system.Interpreter("python27-local", "2.7.18-1", DEB, SHA, depends)
    return replace(sample(family, "debian12-py27"), interpreter=built, at="/srv/eggs/debian12-py27/os")


def test_the_interpreter_package_comes_first_verified_from_its_file() -> None:
    text = system.render(with_interpreter(), "shell", SOURCE)
    assert "# First, the platform's interpreter, built by builder: python27-local 2.7.18-1" in text
    commands = [shlex.split(line) for line in text.splitlines() if not line.startswith("#")]
    # Its Depends with the artifacts' packages (dpkg -i fetches nothing), then the verified file.
    assert commands == [
        ["apt-get", "install", "-y", "--no-install-recommends", "libc6", "libffi8", "libpq5", "libyaml-0-2"],
        ["echo", f"{SHA}  /srv/eggs/debian12-py27/os/{DEB}", "|", "sha256sum", "-c", "-"],
        ["dpkg", "-i", f"/srv/eggs/debian12-py27/os/{DEB}"],
    ]
    redhat = [line for line in system.render(with_interpreter("redhat"), "shell", SOURCE).splitlines() if not line.startswith("#")]
    assert redhat[-1] == f"yum install -y /srv/eggs/debian12-py27/os/{DEB}"
    freebsd = [line for line in system.render(with_interpreter("freebsd"), "shell", SOURCE).splitlines() if not line.startswith("#")]
    assert freebsd[-2:] == [f'test "$(sha256 -q /srv/eggs/debian12-py27/os/{DEB})" = {SHA}',
                            f"pkg add /srv/eggs/debian12-py27/os/{DEB}"]
    data = json.loads(system.render(with_interpreter(), "json", SOURCE))
    assert data["interpreter"] == {"package": "python27-local", "version": "2.7.18-1", "file": f"os/{DEB}",
                                   "sha256": SHA, "depends": ["libc6", "libffi8"]}
    assert list(data)[:4] == ["system_packages_version", "platform", "family", "interpreter"]


def test_ansible_salt_and_puppet_install_the_interpreter_after_checking_its_sha256() -> None:
    [play] = yaml.safe_load(system.render(with_interpreter(), "ansible", SOURCE))
    assert play["vars"]["builder_system_packages"] == ["libc6", "libffi8", "libpq5", "libyaml-0-2"]
    tasks = play["tasks"]
    assert [next(k for k in t if k != "name" and k != "register") for t in tasks] == [
        "ansible.builtin.package", "ansible.builtin.copy", "ansible.builtin.stat", "ansible.builtin.assert",
        "ansible.builtin.apt"]
    assert tasks[1]["ansible.builtin.copy"]["src"] == f"/srv/eggs/debian12-py27/os/{DEB}"
    assert tasks[2]["ansible.builtin.stat"]["checksum_algorithm"] == "sha256"
    assert tasks[3]["ansible.builtin.assert"]["that"] == [f'builder_interpreter_file.stat.checksum == "{SHA}"']
    assert tasks[4]["ansible.builtin.apt"] == {"deb": f"/var/cache/builder/{DEB}"}
    [redhat] = yaml.safe_load(system.render(with_interpreter("redhat"), "ansible", SOURCE))
    assert redhat["tasks"][-1]["ansible.builtin.yum"] == {"name": f"/var/cache/builder/{DEB}", "state": "present"}
    state = yaml.safe_load(system.render(with_interpreter(), "salt", SOURCE))
    assert state["builder-interpreter-file-debian12-py27"]["file.managed"][2] == {"source_hash": f"sha256={SHA}"}
    assert state["builder-interpreter-debian12-py27"]["pkg.installed"] == [
        {"sources": [{"python27-local": f"/var/cache/builder/{DEB}"}]},
        {"require": [{"file": "builder-interpreter-file-debian12-py27"}, {"pkg": "builder-system-packages-debian12-py27"}]}]
    puppet = system.render(with_interpreter(), "puppet", SOURCE)
    assert f"    checksum_value => '{SHA}'," in puppet and "    ensure         => file," in puppet and "    provider => dpkg," in puppet
    assert f"    require  => [File['/var/cache/builder/{DEB}'], Package['libc6'], Package['libffi8']," in puppet

"""host.py's bookkeeping, run as the real script on this machine's Python: the switch, the
cache's arrival check, pruning. (Its install steps are proven in containers: tests/e2e/test_deploy.py.)"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HOST = Path(__file__).resolve().parents[2] / "builder" / "server" / "host.py"
MARK = "@@builder-host-result@@ "


def host(*args: str) -> dict:
    done = subprocess.run([sys.executable, str(HOST), *args], capture_output=True, text=True, timeout=60)
    line = next(line for line in done.stdout.splitlines() if line.startswith(MARK))
    result = json.loads(line[len(MARK):])
    assert (done.returncode == 0) == result["ok"], done
    return result


def fake_release(root: Path, name: str, fingerprint: str = "f1", created: str = "2026-01-01T00:00:00Z") -> None:
    folder = root / "releases" / name
    folder.mkdir(parents=True)
    (folder / "release.json").write_text(json.dumps({"release": name, "fingerprint": fingerprint, "created": created}))


def test_switch_renames_a_new_link_over_the_old_and_keeps_history(tmp_path: Path) -> None:
    fake_release(tmp_path, "v1", created="2026-01-01T00:00:00Z")
    fake_release(tmp_path, "v2", created="2026-01-02T00:00:00Z")
    assert host("switch", str(tmp_path), "v1")["changed"]
    first = os.lstat(tmp_path / "current").st_ino
    result = host("switch", str(tmp_path), "v2")
    assert result == {**result, "from": "v1", "to": "v2", "changed": True}
    assert os.readlink(tmp_path / "current") == "releases/v2"
    assert os.lstat(tmp_path / "current").st_ino != first  # a new link, renamed over the old one
    assert not list(tmp_path.glob(".current.tmp-*"))
    status = host("status", str(tmp_path))
    assert (status["current"], status["previous"]) == ("v2", "v1")
    assert not host("switch", str(tmp_path), "v2")["changed"]


def test_current_never_disappears_while_switching(tmp_path: Path) -> None:
    fake_release(tmp_path, "a")
    fake_release(tmp_path, "b")
    host("switch", str(tmp_path), "a")
    seen_missing = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if not os.path.lexists(tmp_path / "current"):
                seen_missing.append(True)

    watcher = threading.Thread(target=watch)
    watcher.start()
    for name in ("b", "a") * 5:
        host("switch", str(tmp_path), name)
    stop.set()
    watcher.join()
    assert not seen_missing


def test_switch_refuses_an_incomplete_release(tmp_path: Path) -> None:
    (tmp_path / "releases" / "half").mkdir(parents=True)  # a killed prepare: no release.json
    result = host("switch", str(tmp_path), "half")
    assert not result["ok"] and "not complete" in result["error"]
    assert not (tmp_path / "current").exists()
    assert not host("switch", str(tmp_path), "../etc")["ok"]


def test_receive_keeps_what_matches_and_refuses_the_rest(tmp_path: Path) -> None:
    good, bad = b"egg contents", b"tampered"
    for sha, data in ((hashlib.sha256(good).hexdigest(), good), (hashlib.sha256(b"other").hexdigest(), bad)):
        folder = tmp_path / "cache" / ".incoming" / sha
        folder.mkdir(parents=True)
        (folder / f"{sha[:6]}.egg").write_bytes(data)
    result = host("receive", str(tmp_path))
    assert not result["ok"] and "sha256 is" in result["error"]
    status = host("status", str(tmp_path))
    assert list(status["cached"]) == [hashlib.sha256(good).hexdigest()]
    assert not list((tmp_path / "cache" / ".incoming").iterdir())


def test_prepare_refuses_a_release_name_reused_with_other_contents(tmp_path: Path) -> None:
    fake_release(tmp_path, "v1", fingerprint="old")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"release": "v1", "fingerprint": "new", "format": "egg", "artifacts": [],
                                "app": {"file": "app.tar.gz", "sha256": "0" * 64}}))
    result = host("prepare", str(tmp_path), str(plan))
    assert not result["ok"] and "already exists here with other contents" in result["error"]
    plan.write_text(json.dumps({"release": "v1", "fingerprint": "old", "format": "egg", "artifacts": [],
                                "app": {"file": "app.tar.gz", "sha256": "0" * 64}}))
    assert host("prepare", str(tmp_path), str(plan))["state"] == "exists"


def test_prune_keeps_the_newest_and_never_current_or_previous(tmp_path: Path) -> None:
    for day in range(1, 7):
        fake_release(tmp_path, f"v{day}", created=f"2026-01-0{day}T00:00:00Z")
    (tmp_path / "releases" / "broken").mkdir()
    (tmp_path / "releases" / ".trash-v0-123").mkdir()  # a kill in the middle of a removal
    host("switch", str(tmp_path), "v1")
    host("switch", str(tmp_path), "v2")  # current v2, previous v1: the two oldest
    result = host("prune", str(tmp_path), "2")
    assert sorted(result["removed"]) == ["broken", "v3", "v4"]
    assert sorted(p.name for p in (tmp_path / "releases").iterdir()) == ["v1", "v2", "v5", "v6"]


def test_done_records_the_finished_deploy(tmp_path: Path) -> None:
    fake_release(tmp_path, "v1")
    assert not host("done", str(tmp_path), "v1")["ok"]  # not current yet
    host("switch", str(tmp_path), "v1")
    host("done", str(tmp_path), "v1")
    assert host("status", str(tmp_path))["deployed"] == "v1"


@pytest.mark.parametrize("args", [[], ["status"], ["switch", "/x"], ["nope", "/x"]])
def test_bad_usage_exits_2(args: list[str]) -> None:
    assert subprocess.run([sys.executable, str(HOST), *args], capture_output=True).returncode == 2


def test_prune_drops_cached_files_no_kept_release_was_made_from(tmp_path: Path) -> None:
    kept, stale = b"kept egg", b"stale egg"
    for data in (kept, stale):
        sha = hashlib.sha256(data).hexdigest()
        (tmp_path / "cache" / sha).mkdir(parents=True)
        (tmp_path / "cache" / sha / f"{sha[:6]}.egg").write_bytes(data)
    fake_release(tmp_path, "v1")
    manifest = tmp_path / "releases" / "v1" / "release.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()),
                                    "artifacts": [{"file": "k.egg", "sha256": hashlib.sha256(kept).hexdigest()}]}))
    host("switch", str(tmp_path), "v1")
    assert host("prune", str(tmp_path), "5")["uncached"] == [f"{hashlib.sha256(stale).hexdigest()[:6]}.egg"]
    assert list(host("status", str(tmp_path))["cached"]) == [hashlib.sha256(kept).hexdigest()]


def test_a_damaged_history_line_makes_previous_unknown_instead_of_wrong(tmp_path: Path) -> None:
    for name in ("v1", "v2", "v3"):
        fake_release(tmp_path, name)
    for name in ("v1", "v2", "v3"):
        host("switch", str(tmp_path), name)
    # A rollback from v3 to v2 killed after its rename, while writing its record: dropping the
    # cut line would make v1 (what v2 was switched from the first time) the previous release.
    os.symlink("releases/v2", tmp_path / ".current.tmp")
    os.rename(tmp_path / ".current.tmp", tmp_path / "current")
    with open(tmp_path / ".history", "a") as history:
        history.write('{"time": "2026-01-01T00:00:00Z", "fro')
    status = host("status", str(tmp_path))
    assert status["current"] == "v2" and status["previous"] is None
    assert "line 4 of" in status["previous_unknown"] and "damaged" in status["previous_unknown"]
    # The next switch's record is not glued to the cut line (and lost with it).
    host("switch", str(tmp_path), "v3")
    status = host("status", str(tmp_path))
    assert (status["current"], status["previous"], status["previous_unknown"]) == ("v3", "v2", None)


def test_verify_removes_a_cached_file_that_changed(tmp_path: Path) -> None:
    good = b"egg contents"
    sha = hashlib.sha256(good).hexdigest()
    (tmp_path / "cache" / sha).mkdir(parents=True)
    (tmp_path / "cache" / sha / "a.egg").write_bytes(b"flipped bits")
    other = hashlib.sha256(b"other").hexdigest()
    (tmp_path / "cache" / other).mkdir()
    (tmp_path / "cache" / other / "b.egg").write_bytes(b"other")
    result = host("verify", str(tmp_path), sha, other, "f" * 64)
    assert result["corrupt"] == [{"file": "a.egg", "sha256": sha, "actual": hashlib.sha256(b"flipped bits").hexdigest()}]
    assert list(host("status", str(tmp_path))["cached"]) == [other]


def test_a_leftover_of_a_dead_copy_never_refuses_a_later_arrival(tmp_path: Path) -> None:
    incoming = tmp_path / "cache" / ".incoming"
    dead = incoming / "run-dead" / ("a" * 64)
    dead.mkdir(parents=True)
    (dead / "partial.egg").write_bytes(b"")  # what a copy cut short leaves
    plain = incoming / ("b" * 64)
    plain.mkdir()
    (plain / "old.egg").write_bytes(b"")
    old = time.time() - 2 * 3600
    for path in (dead / "partial.egg", dead, incoming / "run-dead"):
        os.utime(path, (old, old))
    data = b"new egg"
    sha = hashlib.sha256(data).hexdigest()
    (incoming / "run-new" / sha).mkdir(parents=True)
    (incoming / "run-new" / sha / "new.egg").write_bytes(data)
    result = host("receive", str(tmp_path), "run-new")
    assert result["ok"] and result["received"] == ["new.egg"], result
    assert not (incoming / "run-dead").exists()  # stale: removed
    assert plain.exists()  # recent: maybe a copy still running elsewhere; not looked at
    assert not (incoming / "run-new").exists()


def test_an_fsync_error_other_than_cannot_sync_a_folder_is_raised(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import errno
    import importlib.util

    spec = importlib.util.spec_from_file_location("host_script", HOST)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def failing(code: int):  # noqa: ANN202
        def fsync(fd: int) -> None:
            raise OSError(code, os.strerror(code))
        return fsync

    monkeypatch.setattr(module.os, "fsync", failing(errno.EINVAL))
    module.sync_dir(str(tmp_path))  # this file system cannot sync folders: nothing to do
    monkeypatch.setattr(module.os, "fsync", failing(errno.EIO))
    with pytest.raises(module.HostError, match="could not be synced"):
        module.sync_dir(str(tmp_path))


def test_the_script_runs_from_a_pipe_and_status_writes_nothing(tmp_path: Path) -> None:
    fake_release(tmp_path, "v1")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    done = subprocess.run([sys.executable, "-", "status", str(tmp_path)], input=HOST.read_bytes(), capture_output=True,
                          timeout=60, check=False)
    line = next(line for line in done.stdout.decode().splitlines() if line.startswith(MARK))
    status = json.loads(line[len(MARK):])
    assert status["ok"] and [r["name"] for r in status["releases"]] == ["v1"] and status["unwritable"] is None
    assert sorted(p.name for p in tmp_path.rglob("*")) == before

"""host.py's bookkeeping, run as the real script on this machine's Python: the switch, the
cache's arrival check, pruning. (Its install steps are proven in containers: tests/e2e/test_deploy.py.)"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
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

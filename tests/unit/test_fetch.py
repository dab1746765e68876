"""fetch against a local PEP 503 index (file://) and local paths: no network, real files."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from builder.errors import FetchError
from builder.fetch import Fetcher, index_files, sha256_file
from builder.matrix.model import Pin


def make_index(root: Path, project: str, files: dict[str, bytes], with_hashes: bool = True) -> str:
    folder = root / "simple" / project
    folder.mkdir(parents=True)
    links = []
    for name, data in files.items():
        (folder / name).write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        links.append(f'<a href="{name}#sha256={digest}">{name}</a>' if with_hashes else f'<a href="{name}">{name}</a>')
    (folder / "index.html").write_text("<!DOCTYPE html><html><body>" + "\n".join(links) + "</body></html>")
    return (root / "simple").as_uri()


def pin_for(name: str, version: str, data: bytes) -> Pin:
    return Pin(name, version, hashlib.sha256(data).hexdigest())


def test_index_page_lists_files_with_hashes(tmp_path: Path) -> None:
    url = make_index(tmp_path, "demo", {"demo-1.0.tar.gz": b"a", "demo-1.1.tar.gz": b"b"})
    files = index_files(url, "Demo")
    assert sorted(f.filename for f in files) == ["demo-1.0.tar.gz", "demo-1.1.tar.gz"]
    assert {f.sha256 for f in files} == {hashlib.sha256(b"a").hexdigest(), hashlib.sha256(b"b").hexdigest()}


def test_the_hash_chooses_the_file_and_the_cache_is_content_addressed(tmp_path: Path) -> None:
    url = make_index(tmp_path, "demo", {"demo-1.0.tar.gz": b"sdist", "demo-1.0-py3-none-any.whl": b"wheel"})
    fetcher = Fetcher(tmp_path / "cache", url)
    path = fetcher.fetch(pin_for("demo", "1.0", b"wheel"))
    assert path.name == "demo-1.0-py3-none-any.whl"
    assert path.read_bytes() == b"wheel"
    assert path.parent.name == sha256_file(path)
    # Second fetch: served from the cache (re-hashed) even when the index is gone.
    (tmp_path / "simple" / "demo" / "index.html").unlink()
    assert fetcher.fetch(pin_for("demo", "1.0", b"wheel")) == path


def test_a_cached_file_is_hashed_again_at_every_use_and_fetched_again_when_wrong(tmp_path: Path) -> None:
    url = make_index(tmp_path, "demo", {"demo-1.0.tar.gz": b"sdist"})
    said: list[str] = []
    fetcher = Fetcher(tmp_path / "cache", url, warn=said.append)
    pin = pin_for("demo", "1.0", b"sdist")
    path = fetcher.fetch(pin)
    assert said == []
    path.write_bytes(b"poisoned")  # another user, a bad disk, a half-written file of an old version
    again = fetcher.fetch(pin)
    assert again == path and again.read_bytes() == b"sdist"
    assert len(said) == 1, said
    assert f"cached {path} no longer has sha256 {pin.sha256}" in said[0]
    assert hashlib.sha256(b"poisoned").hexdigest() in said[0] and "fetching it again" in said[0]


def test_a_wrong_cached_file_and_a_wrong_index_fail_naming_the_file_and_both_hashes(tmp_path: Path) -> None:
    url = make_index(tmp_path, "demo", {"demo-1.0.tar.gz": b"sdist"})
    said: list[str] = []
    fetcher = Fetcher(tmp_path / "cache", url, warn=said.append)
    pin = pin_for("demo", "1.0", b"sdist")
    path = fetcher.fetch(pin)
    path.write_bytes(b"poisoned")
    (tmp_path / "simple" / "demo" / "demo-1.0.tar.gz").write_bytes(b"served wrong")
    with pytest.raises(FetchError) as err:
        fetcher.fetch(pin)
    message = err.value.message
    assert "demo-1.0.tar.gz" in message and pin.sha256 in message
    assert hashlib.sha256(b"served wrong").hexdigest() in message
    assert not path.exists()  # the poisoned copy is gone, not left for the next run
    assert len(said) == 1


def test_a_truncated_cached_file_is_replaced(tmp_path: Path) -> None:
    src = tmp_path / "local-1.0.tar.gz"
    src.write_bytes(b"local bytes")
    pin = Pin("local", "1.0", hashlib.sha256(b"local bytes").hexdigest(), path=str(src))
    fetcher = Fetcher(tmp_path / "cache", "file:///nonexistent", warn=lambda line: None)
    path = fetcher.fetch(pin)
    path.write_bytes(b"local")
    assert fetcher.fetch(pin).read_bytes() == b"local bytes"


def test_wrong_sha256_is_refused_naming_the_files(tmp_path: Path) -> None:
    url = make_index(tmp_path, "demo", {"demo-1.0.tar.gz": b"sdist"})
    with pytest.raises(FetchError) as err:
        Fetcher(tmp_path / "cache", url).fetch(Pin("demo", "1.0", "0" * 64))
    assert "no file of demo 1.0 on the index has sha256 " + "0" * 64 in err.value.message
    assert "demo-1.0.tar.gz" in (err.value.hint or "")
    assert not any((tmp_path / "cache").rglob("*.tar.gz"))


def test_version_and_hash_must_agree(tmp_path: Path) -> None:
    url = make_index(tmp_path, "demo", {"demo-1.0.tar.gz": b"one"})
    with pytest.raises(FetchError, match="not version 2.0"):
        Fetcher(tmp_path / "cache", url).fetch(pin_for("demo", "2.0", b"one"))


def test_a_tampered_download_is_refused_even_when_the_index_agrees(tmp_path: Path) -> None:
    url = make_index(tmp_path, "demo", {"demo-1.0.tar.gz": b"good"})
    (tmp_path / "simple" / "demo" / "demo-1.0.tar.gz").write_bytes(b"evil")
    with pytest.raises(FetchError, match="sha256 mismatch"):
        Fetcher(tmp_path / "cache", url).fetch(pin_for("demo", "1.0", b"good"))
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_local_path_and_url_sources(tmp_path: Path) -> None:
    src = tmp_path / "local-1.0.tar.gz"
    src.write_bytes(b"local")
    fetcher = Fetcher(tmp_path / "cache", "file:///nonexistent")
    pin = Pin("local", "1.0", hashlib.sha256(b"local").hexdigest(), path=str(src))
    assert fetcher.fetch(pin).read_bytes() == b"local"
    by_url = Pin("local", "1.0", pin.sha256, url=src.as_uri())
    assert Fetcher(tmp_path / "cache2", "file:///nonexistent").fetch(by_url).name == "local-1.0.tar.gz"
    with pytest.raises(FetchError, match="no file at"):
        fetcher.fetch(Pin("gone", "1.0", "1" * 64, path=str(tmp_path / "gone.tar.gz")))


def test_unknown_project_and_unreachable_index(tmp_path: Path) -> None:
    url = make_index(tmp_path, "demo", {"demo-1.0.tar.gz": b"x"})
    with pytest.raises(FetchError, match="cannot reach the index|not on the index"):
        Fetcher(tmp_path / "c", url).fetch(Pin("other", "1.0", "2" * 64))


def test_index_without_hashes_asks_for_a_url(tmp_path: Path) -> None:
    url = make_index(tmp_path, "demo", {"demo-1.0.tar.gz": b"x"}, with_hashes=False)
    with pytest.raises(FetchError, match="gives no sha256"):
        Fetcher(tmp_path / "c", url).fetch(pin_for("demo", "1.0", b"x"))


def test_hints_name_the_matrix_file_as_the_user_gave_it(tmp_path: Path) -> None:
    url = make_index(tmp_path, "demo", {"demo-1.0.tar.gz": b"sdist"})
    fetcher = Fetcher(tmp_path / "cache", url, matrix_file="cases/x.yaml")
    with pytest.raises(FetchError) as err:
        fetcher.fetch(Pin("demo", "9.9", "1" * 64))
    assert err.value.hint == "check the version in cases/x.yaml"
    local = tmp_path / "local.tar.gz"
    local.write_bytes(b"other bytes")
    with pytest.raises(FetchError) as err:
        fetcher.fetch(Pin("local", "1.0", "2" * 64, path=str(local)))
    assert "cases/x.yaml pins " + "2" * 64 in err.value.message
    assert (err.value.hint or "").endswith("update the sha256 in cases/x.yaml")

"""Fetch pinned files on the host and verify them before anything uses them.

Files come from the package index's simple API (PEP 691 JSON, or PEP 503 HTML for plain
mirrors and file:// folders), from a URL, or from a local path. No package code runs here:
we never call `pip download`, which executes setup.py for sdists.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from packaging.utils import canonicalize_name

from .errors import FetchError
from .matrix.model import Pin

JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"
TIMEOUT = 60


def default_index_url() -> str:
    """pip's own index: PIP_INDEX_URL, else pip's built-in default, so no host is named here."""
    configured = os.environ.get("PIP_INDEX_URL")
    if configured:
        return configured
    try:
        from pip._internal.models.index import PyPI  # the URL pip itself uses by default
    except ImportError as exc:  # pragma: no cover - pip always ships with the host Python here
        raise FetchError(
            "no package index configured", hint="set settings.index_url in the matrix file or BUILDER_INDEX_URL"
        ) from exc
    return str(PyPI.simple_url)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class IndexFile:
    filename: str
    url: str
    sha256: str | None
    requires_python: str | None = None  # PEP 691 requires-python / PEP 503 data-requires-python
    yanked: bool = False


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str, dict[str, str | None]]] = []
        self._href: str | None = None
        self._attrs: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._attrs = dict(attrs)
            self._href = self._attrs.get("href")

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self.links.append((self._href, data.strip(), self._attrs))
            self._href = None


def _open(url: str, accept: str | None = None):  # noqa: ANN202 - urllib's response type
    import urllib.request  # only when something is downloaded: a cached run never loads http.client

    headers = {"Accept": accept} if accept else {}
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT)


def index_files(index_url: str, project: str, matrix_file: str = "matrix.yaml") -> list[IndexFile]:
    """The files of a project on a simple index, with their sha256 where the index gives it."""
    page = index_url.rstrip("/") + "/" + canonicalize_name(project) + "/"
    accept = f"{JSON_ACCEPT}, text/html;q=0.1"
    try:
        with _open(page if not page.startswith("file:") else page + "index.html", accept) as response:
            body = response.read()
            content_type = response.headers.get("Content-Type", "") if hasattr(response, "headers") else ""
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise FetchError(f"{project} is not on the index {index_url}", hint=f"check the name in {matrix_file}") from exc
        raise FetchError(f"the index answered {exc.code} for {page}", hint="retry, or set settings.index_url") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise FetchError(
            f"cannot reach the index at {page}: {getattr(exc, 'reason', exc)}",
            hint="check the network or point settings.index_url / BUILDER_INDEX_URL at a mirror",
        ) from exc
    if "json" in content_type:
        data = json.loads(body)
        return [
            IndexFile(f["filename"], urllib.parse.urljoin(page, f["url"]), f.get("hashes", {}).get("sha256"),
                      f.get("requires-python") or None, bool(f.get("yanked")))
            for f in data.get("files", [])
        ]
    parser = _Links()
    parser.feed(body.decode("utf-8", "replace"))
    files = []
    for href, text, attrs in parser.links:
        url, _, fragment = href.partition("#")
        algo, _, value = fragment.partition("=")
        name = text or urllib.parse.unquote(url.rsplit("/", 1)[-1])
        files.append(IndexFile(name, urllib.parse.urljoin(page, url), value if algo == "sha256" else None,
                               attrs.get("data-requires-python") or None, "data-yanked" in attrs))
    return files


def _download(url: str, dest: Path) -> None:
    try:
        with _open(url) as response, open(dest, "wb") as out:
            shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError) as exc:
        raise FetchError(f"cannot download {url}: {getattr(exc, 'reason', exc)}", hint="retry, or check the URL") from exc


def _to_stderr(line: str) -> None:
    # Callers with a run's output pass their own `warn`; the others (deploy bundles, check-imports)
    # must still not repair a poisoned cache without a word.
    print(f"warning: {line}", file=sys.stderr, flush=True)


class Fetcher:
    """A content-addressed cache: cache/sources/<sha256>/<filename>, filled only with verified files.

    A cached file is hashed again at every fetch (about 1 ms per MB here: 11 ms for the 36
    files, 12.6 MB, of a full cache), so a cache changed on disk since it was filled (another
    user, a bad disk, a half-written file of an old version) is never used: it is removed,
    fetched again, and `warn` says so.
    """

    def __init__(
        self, cache: Path, index_url: str | None = None, warn: Callable[[str], None] | None = None, matrix_file: str = "matrix.yaml"
    ) -> None:
        self.matrix_file = matrix_file  # the file as the user named it, for the hints
        self.root = cache / "sources"
        self._index_url = index_url
        self._warn = warn or _to_stderr

    @property
    def index_url(self) -> str:
        if self._index_url is None:
            self._index_url = default_index_url()
        return self._index_url

    def cached(self, pin: Pin) -> Path | None:
        folder = self.root / pin.sha256
        for candidate in folder.glob("*") if folder.is_dir() else ():
            if not candidate.name.startswith(".") and candidate.is_file():
                return candidate
        return None

    def fetch(self, pin: Pin) -> Path:
        found = self.cached(pin)
        if found is not None:
            got = sha256_file(found)
            if got == pin.sha256:
                return found
            found.unlink(missing_ok=True)
            self._warn(
                f"cached {found} no longer has sha256 {pin.sha256} (it has {got}): removed it, fetching it again"
            )
        url, filename = self._locate(pin)
        folder = self.root / pin.sha256
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".part-", dir=folder)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            if pin.path:
                shutil.copyfile(pin.path, tmp)
            else:
                _download(url, tmp)
            got = sha256_file(tmp)
            if got != pin.sha256:
                raise FetchError(
                    f"sha256 mismatch for {pin.name} {pin.version} ({filename} from {url}): {self.matrix_file} pins "
                    f"{pin.sha256}, the file has {got}",
                    hint="the file is not the one pinned: nothing was built from it. If the new file is "
                    f"trusted, update the sha256 in {self.matrix_file}",
                )
            final = folder / filename
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; cached sources are not secrets
            os.replace(tmp, final)
            _write_origin(folder, url)
            return final
        finally:
            tmp.unlink(missing_ok=True)

    def origin(self, pin: Pin) -> str:
        """Where the pinned file came from, for the provenance: the URL it was downloaded from
        (recorded beside it in the cache), else its url: or path: pin, else its project's page
        on the index."""
        try:
            recorded = (self.root / pin.sha256 / ORIGIN).read_text().strip()
        except OSError:
            recorded = ""
        if recorded:
            return recorded
        if pin.url:
            return pin.url
        if pin.path:
            return Path(pin.path).resolve().as_uri()
        try:
            return self.index_url.rstrip("/") + "/" + canonicalize_name(pin.name) + "/"
        except FetchError:
            return ""

    def _locate(self, pin: Pin) -> tuple[str, str]:
        if pin.path:
            if not Path(pin.path).is_file():
                raise FetchError(f"{pin.name} {pin.version}: no file at {pin.path}", hint=f"fix path: in {self.matrix_file}")
            return pin.path, Path(pin.path).name
        if pin.url:
            name = urllib.parse.unquote(urllib.parse.urlsplit(pin.url).path.rsplit("/", 1)[-1])
            return pin.url, name or f"{pin.name}-{pin.version}"
        files = index_files(self.index_url, pin.name, self.matrix_file)
        for f in files:
            if f.sha256 == pin.sha256:
                if not _names_version(f.filename, pin.version):
                    raise FetchError(
                        f"{pin.name}: the file with sha256 {pin.sha256} is {f.filename}, not version {pin.version}",
                        hint=f"make version and sha256 in {self.matrix_file} name the same file",
                    )
                return f.url, f.filename
        same_version = [f for f in files if _names_version(f.filename, pin.version)]
        if not same_version:
            raise FetchError(
                f"{pin.name} {pin.version} is not on the index {self.index_url}",
                hint=f"check the version in {self.matrix_file}",
            )
        if all(f.sha256 is None for f in same_version):
            raise FetchError(
                f"the index gives no sha256 for {pin.name} {pin.version}, so the pinned file cannot be chosen",
                hint=f"give the file's url: in {self.matrix_file} (it is still verified against the sha256)",
            )
        listing = "; ".join(f"{f.filename} ({f.sha256})" for f in same_version[:8])
        raise FetchError(
            f"no file of {pin.name} {pin.version} on the index has sha256 {pin.sha256}",
            hint=f"files of that version: {listing}",
        )


ORIGIN = ".origin"  # hidden: cached() never takes it for the file


def _write_origin(folder: Path, url: str) -> None:
    try:
        tmp = folder / f"{ORIGIN}.tmp-{os.getpid()}"
        tmp.write_text(url + "\n")
        os.replace(tmp, folder / ORIGIN)
    except OSError:
        pass  # only the provenance's URL is at stake: it falls back to the pin or the index page


def _names_version(filename: str, version: str) -> bool:
    # Sdists are NAME-VERSION.tar.gz, wheels and eggs NAME-VERSION-TAGS.ext; names may hold dashes.
    stem = filename
    for ext in (".tar.gz", ".tar.bz2", ".tgz", ".zip", ".whl", ".egg"):
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
            break
    parts = stem.split("-")
    return version in parts[1:]

"""A platform's runtime image's fingerprint, taken when builder publishes for the platform.

The answer is host.py's own (`fingerprint`, builder/server/host.py), run with the platform's
Python in a fresh runtime guest (no network, as every guest): the same questions deploy asks each
server, so the two answers compare field by field (builder.deploy.doctor). It is kept in the
work folder by the runtime image's id, host.py's bytes and the package list, so an image is
asked once, not at every publish.
"""
from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import BuilderError
from ..machines.base import GUEST_ROOT, Backend, Images
from ..matrix.model import Matrix, Platform
from ..matrix.plan import runtime_packages
from ..output import fingerprint as published

HOST_SCRIPT = Path(__file__).resolve().parent.parent / "server" / "host.py"
RESULT_MARK = "@@builder-host-result@@ "


def take(backend: Backend, matrix: Matrix, platform: Platform, images: Images, echo: Callable[[str], None]) -> bytes:
    """fingerprint.json's bytes for the platform's runtime image; BuilderError if it cannot be asked."""
    packages = list(runtime_packages(matrix, platform))
    if platform.interpreter:  # the package the image's Python came from: doctor compares the servers' with it
        packages.insert(0, platform.interpreter.package)
    script = HOST_SCRIPT.read_bytes()
    key = hashlib.sha256(json.dumps([images.runtime, hashlib.sha256(script).hexdigest(), platform.python,
                                     packages]).encode()).hexdigest()
    cache = matrix.settings.work / "images" / f"{platform.name}.fingerprint.json"
    try:
        kept = json.loads(cache.read_text())
        if kept.get("key") == key:
            return published.dump(published.check(kept["document"], str(cache)))
    except (OSError, ValueError, KeyError, BuilderError):
        pass  # not taken yet, or for another image: ask the image
    answer = _ask(backend, platform, images, packages)
    missing = sorted(name for name, facts in answer["packages"].items() if facts is None)
    if missing:  # the image was given them: a package manager that cannot tell is builder's to know
        echo(f"[{platform.name}] the runtime image's package manager does not list {', '.join(missing)}")
    doc = published.check(published.document(platform.name, images.runtime, answer), f"the {platform.name} runtime image's answer")
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps({"key": key, "document": doc}, indent=2, sort_keys=True) + "\n")
    tmp.replace(cache)
    return published.dump(doc)


def _ask(backend: Backend, platform: Platform, images: Images, packages: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="builder-fingerprint-") as staging:
        (Path(staging) / "host.py").write_bytes(HOST_SCRIPT.read_bytes())
        with backend.machine(platform, images, "runtime", platform.limits, f"{platform.name}/fingerprint") as machine:
            machine.copy_in(Path(staging), f"{GUEST_ROOT}/server")
            done = machine.run([platform.python, f"{GUEST_ROOT}/server/host.py", "fingerprint", "/", *packages],
                               env={"LANG": "C.UTF-8"}, timeout=300)
    result = next((json.loads(line[len(RESULT_MARK):]) for line in done.output.splitlines()
                   if line.startswith(RESULT_MARK)), None)
    if result is None or not result.get("ok"):
        tail = " | ".join(done.output.strip().splitlines()[-3:])
        raise BuilderError(f"the {platform.name} runtime image did not say what it is (host.py fingerprint, "
                           f"exit {done.returncode}): {tail}", hint=f"is {platform.python} the image's Python?")
    return dict(result["fingerprint"])

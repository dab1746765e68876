"""Who owns what builder writes on the host.

Files copied out of a guest never keep the guest's owner (uid 65534, or root): they are
unpacked with tarfile's "data" filter, which drops ownership, so they belong to whoever runs
builder. A plain user who can reach the Docker socket therefore owns everything builder writes.

Under sudo that user would be root, and the checkout would fill with a root-owned eggs/ and
.builder/ that its owner can neither delete nor commit. People use sudo here to reach the Docker
socket (and, once per machine, for debootstrap), not to make root the owner of their artifacts;
so when builder runs as root with SUDO_UID/SUDO_GID set, what it made inside the project folder
(the folder of matrix.yaml: the output and work folders, and the cache when it lies there) is
given to that user at the end of the command. Outside the project (a cache in /var/cache, say)
root keeps what it wrote. Only root-owned entries are handed over: files of other owners are
left as they are.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path


def invoking_user(environ: Mapping[str, str] = os.environ) -> tuple[int, int] | None:
    """(uid, gid) of the user who ran sudo, when this process is root under sudo; else None."""
    if os.geteuid() != 0:
        return None
    uid, gid = environ.get("SUDO_UID", ""), environ.get("SUDO_GID", "")
    if not (uid.isdigit() and gid.isdigit()) or int(uid) == 0:
        return None
    return int(uid), int(gid)


def hand_over(project: Path, folders: Iterable[Path], user: tuple[int, int] | None) -> int:
    """Give root-owned entries under each folder inside `project` to `user`. Returns how many."""
    if user is None:
        return 0
    root = project.resolve()
    count = 0
    for folder in folders:
        folder = folder.resolve()
        if not folder.is_dir() or (folder != root and root not in folder.parents):
            continue
        # The folder itself, and the folders between it and the project that builder made.
        chain = [folder, *[p for p in folder.parents if root in p.parents]]
        paths = chain + [Path(d) / n for d, dirs, files in os.walk(folder) for n in dirs + files]
        for path in paths:
            try:
                if path.lstat().st_uid == 0:
                    os.lchown(path, *user)
                    count += 1
            except OSError:
                continue  # removed meanwhile (a temporary file), or a file system that refuses chown
    return count

"""Locks on a file in a folder (flock), which say who holds them while they are held.

flock locks belong to the open file and vanish with the process, so a run killed with -9 never
leaves a folder locked; the holder's pid, host, start time and command are written into the
file so that whoever waits can be told who to wait for.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

RUN_LOCK = ".lock"


def write_holder(fd: int) -> None:
    holder = {
        "pid": os.getpid(), "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": sys.argv,
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)


def release(fd: int) -> None:
    # Left empty, not deleted: a waiter may already have it open, and a committed folder then
    # sees no change in it from run to run.
    os.ftruncate(fd, 0)
    fcntl.flock(fd, fcntl.LOCK_UN)


def holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 65536, 0))
        return f"pid {info['pid']} on {info['host']} (started {info['started']}: {' '.join(info['command'])})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"  # it has the lock but has not written who it is yet


@contextmanager
def run_lock(work: Path, waiting: Callable[[str], None]) -> Iterator[None]:
    """One builder run at a time per work folder, for the whole run.

    Two runs on the same tree would otherwise rebuild into the same cell folders and image
    contexts under each other, and a run could publish an artifact the other one was still
    writing. The second run waits (saying once for whom) and then goes on: cells the first one
    published with the same inputs are then up to date and not rebuilt.
    """
    work.mkdir(parents=True, exist_ok=True)
    fd = os.open(work / RUN_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waiting(f"waiting: {work} is in use by {holder(fd)}; this run goes on when that one ends "
                    "(Ctrl-C to give up)")
            fcntl.flock(fd, fcntl.LOCK_EX)
        write_holder(fd)
        try:
            yield
        finally:
            release(fd)
    finally:
        os.close(fd)

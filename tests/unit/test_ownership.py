"""Under sudo, what builder made in the project goes to the invoking user; nothing else moves."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.ownership import hand_over, invoking_user

USER = (4242, 4343)
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


def test_who_invoked() -> None:
    assert invoking_user({"SUDO_UID": "4242", "SUDO_GID": "4343"}) == USER
    assert invoking_user({}) is None  # root, not under sudo: root keeps what it makes
    assert invoking_user({"SUDO_UID": "0", "SUDO_GID": "0"}) is None
    assert invoking_user({"SUDO_UID": "x", "SUDO_GID": "1"}) is None


def test_only_root_owned_entries_inside_the_project_are_handed_over(tmp_path: Path) -> None:
    project = tmp_path / "p"
    made = project / ".builder" / "work" / "cells" / "a"
    made.mkdir(parents=True)
    (made / "a.egg").write_text("x")
    (made / "link").symlink_to("/etc/passwd")
    theirs = project / "eggs" / "README.md"
    theirs.parent.mkdir()
    theirs.write_text("mine")
    os.chown(theirs, 1234, 1234)
    outside = tmp_path / "cache"
    outside.mkdir()
    count = hand_over(project, [project / ".builder" / "work", project / "eggs", outside], USER)
    owned = {p: (p.lstat().st_uid, p.lstat().st_gid) for p in project.rglob("*")}
    assert owned[project / ".builder"] == USER and owned[made / "a.egg"] == USER and owned[made / "link"] == USER
    assert owned[theirs] == (1234, 1234)
    assert os.stat("/etc/passwd").st_uid == 0  # the link was changed, not what it points to
    assert project.stat().st_uid == 0 and outside.stat().st_uid == 0
    assert count == 7  # .builder, work, cells, a, a.egg, link, eggs
    assert hand_over(project, [project / "eggs"], None) == 0

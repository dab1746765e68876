"""The ssh transport against a real sshd: one login, many commands, copies both ways."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from builder.errors import BuilderError, OutputTooLarge, TransportError
from builder.machines.ssh import Connection, Destination

from .sshd import keypair, sshd_container, sshd_image


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - a generator fixture
    key = keypair(tmp_path_factory.mktemp("key"))
    with sshd_container(sshd_image("builder/base:bookworm"), key) as dest:
        yield dest


def test_commands_reuse_one_connection(server: Destination) -> None:
    with Connection(server) as conn:
        first = conn.run(["sh", "-c", "echo $SSH_CONNECTION"])
        assert first.returncode == 0
        start = time.monotonic()
        for _ in range(10):
            again = conn.run(["sh", "-c", "echo $SSH_CONNECTION"])
            # The same TCP connection (same client port) serves every command.
            assert again.output == first.output
        per_command = (time.monotonic() - start) / 10
        assert per_command < 0.5, per_command
        done = conn.run(["sh", "-c", 'printf "%s|" "$@"; echo "$GREETING"; exit 3', "sh", "a b", "$(x)", "it's"],
                        env={"GREETING": "hi there"}, cwd="/tmp")
        assert done.returncode == 3
        assert done.output == "a b|$(x)|it's|hi there\n"
        assert conn.run(["cat"], input=b"fed\n").output == "fed\n"


def test_timeout_and_streamed_output(server: Destination) -> None:
    lines: list[str] = []
    with Connection(server) as conn:
        slow = conn.run(["sh", "-c", "echo started; sleep 30"], timeout=2, log=lines.append)
    assert slow.timed_out and lines == ["started"]


def test_copies_both_ways(server: Destination, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("alpha")
    (tree / "sub" / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (tree / "sub" / "run.sh").chmod(0o755)
    single = tmp_path / "one.bin"
    single.write_bytes(bytes(range(256)) * 100)
    with Connection(server) as conn:
        conn.put(tree, "/tmp/deep/tree")
        conn.put(single, "/tmp/files/renamed.bin")
        assert conn.run(["/tmp/deep/tree/sub/run.sh"]).output == "ran\n"
        assert conn.run(["stat", "-c", "%U", "/tmp/deep/tree/a.txt"]).output.strip() == "deploy"
        back = tmp_path / "back"
        conn.get("/tmp/deep/tree", back)
        conn.get("/tmp/files/renamed.bin", tmp_path / "back.bin")
        with pytest.raises(TransportError, match="/tmp/missing"):
            conn.get("/tmp/missing", tmp_path / "nothing")
        # More than the limit (a cell's limits.output) is refused, and nothing of it kept.
        conn.run(["sh", "-c", "mkdir -p /tmp/big && head -c 3000000 /dev/urandom > /tmp/big/blob"])
        with pytest.raises(OutputTooLarge, match="over limits.output"):
            conn.get("/tmp/big", tmp_path / "big", limit=1 << 20)
        conn.get("/tmp/deep/tree", tmp_path / "small", limit=1 << 20)
    assert (back / "a.txt").read_text() == "alpha"
    assert (back / "sub" / "run.sh").read_text().endswith("echo ran\n")
    assert (tmp_path / "back.bin").read_bytes() == single.read_bytes()
    assert not (tmp_path / "nothing").exists()
    assert not (tmp_path / "big").exists() and not list(tmp_path.glob(".get-*"))
    assert (tmp_path / "small" / "a.txt").read_text() == "alpha"


def test_a_link_out_of_the_folder_is_refused_and_nothing_of_the_copy_kept(server: Destination, tmp_path: Path) -> None:
    with Connection(server) as conn:
        made = conn.run(["sh", "-c", "mkdir -p /tmp/linked && for n in 0 1 2 3 4 5 6 7; do echo x > /tmp/linked/a$n.egg; done"
                         " && ln -s /etc/shadow /tmp/linked/shadow"])
        assert made.returncode == 0, made.output
        dest = tmp_path / "out"
        dest.mkdir()
        with pytest.raises(BuilderError, match="shadow"):
            conn.get("/tmp/linked", dest)
    assert list(dest.iterdir()) == [] and not list(tmp_path.glob(".get-*"))


def test_refusals_are_clear(server: Destination, tmp_path: Path) -> None:
    wrong_key = keypair(tmp_path)
    with pytest.raises(TransportError, match="Permission denied") as denied:
        with Connection(Destination(server.host, user=server.user, port=server.port, identity=wrong_key, options=server.options)):
            pass
    assert "key" in (denied.value.hint or "")
    closed = subprocess.run(["python3", "-c", "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    with pytest.raises(TransportError, match="refused"):
        with Connection(Destination("127.0.0.1", port=int(closed)), connect_timeout=5):
            pass

from __future__ import annotations

import io
import os
import shlex
from pathlib import Path

import pytest

from builder.machines.ssh import Connection, Destination, remote_command

VAGRANT_SSH_CONFIG = """\
Host debian12-vm-build
  HostName 127.0.0.1
  User vagrant
  Port 2200
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile "/home/u/my project/.builder/vagrant/key"
  IdentitiesOnly yes
  LogLevel FATAL

Host debian12-vm-runtime
  HostName 172.17.0.3
  User vagrant
  Port 22
  IdentityFile /k
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("web1", Destination("web1")),
        ("deploy@web1", Destination("web1", user="deploy")),
        ("deploy@10.0.0.5:2222", Destination("10.0.0.5", user="deploy", port=2222)),
        ("ssh://deploy@web1.example:2201/", Destination("web1.example", user="deploy", port=2201)),
        ("[::1]:2222", Destination("::1", port=2222)),
        ("root@[::1]", Destination("::1", user="root")),
    ],
)
def test_destination_strings(text: str, expected: Destination) -> None:
    assert Destination.parse(text) == expected


@pytest.mark.parametrize("text", ["", "@web1", "web1:0", "web1:http", "deploy@", "we b1"])
def test_bad_destinations_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match="ssh destination"):
        Destination.parse(text)


def test_str_round_trips() -> None:
    for text in ["web1", "deploy@web1", "deploy@10.0.0.5:2222", "[::1]:2222"]:
        assert str(Destination.parse(text)) == text
        assert Destination.parse(str(Destination.parse(text))) == Destination.parse(text)


def test_vagrant_ssh_config_gives_one_destination_per_machine() -> None:
    machines = Destination.from_ssh_config(VAGRANT_SSH_CONFIG)
    assert sorted(machines) == ["debian12-vm-build", "debian12-vm-runtime"]
    build = machines["debian12-vm-build"]
    assert (build.host, build.user, build.port) == ("127.0.0.1", "vagrant", 2200)
    assert build.identity == Path("/home/u/my project/.builder/vagrant/key")
    assert ("StrictHostKeyChecking", "no") in build.options
    assert all(key.lower() not in {"hostname", "user", "port", "identityfile"} for key, _ in build.options)
    assert machines["debian12-vm-runtime"].host == "172.17.0.3"


def test_remote_command_quotes_every_word() -> None:
    hostile = ["echo", "$(touch /tmp/x)", "a b", "it's", ";rm -rf /"]
    command = remote_command(hostile, env={"A": "1 2"}, cwd="/srv/my app")
    assert command.startswith("cd '/srv/my app' && env 'A=1 2' echo ")
    # What the remote sh sees after its own word splitting is exactly our argv.
    assert shlex.split(command.split(" && ", 1)[1])[2:] == hostile


def test_the_command_line_carries_the_destination_and_no_master_before_connecting() -> None:
    dest = Destination("web1", user="deploy", port=2222, identity=Path("/k"), options=(("StrictHostKeyChecking", "accept-new"),))
    argv = Connection(dest).argv(["uname", "-a"])
    assert argv[0] == "ssh" and argv[-3:] == ["--", "web1", "uname -a"]
    joined = " ".join(argv)
    for part in ("-l deploy", "-p 2222", "-i /k", "IdentitiesOnly=yes", "BatchMode=yes", "StrictHostKeyChecking=accept-new"):
        assert part in joined
    assert "ControlPath" not in joined
    assert "-t" in Connection(dest).argv(tty=True)


def test_commands_need_an_open_connection() -> None:
    with pytest.raises(RuntimeError, match="context manager"):
        Connection(Destination("web1")).run(["true"])


@pytest.mark.parametrize("text", [
    "de ploy@127.0.0.1", "deploy@@127.0.0.1", "deploy@127.0.0.1:22:33", "h:22:33", "[::1", "[::1]x", "[web1]:22",
    "-V", "deploy@-V", "-oProxyCommand=touch /tmp/x", "deploy@-oProxyCommand=x", "-deploy@web1", "web1.-x",
    "999.0.0.1", "root@::1", "web1:65536", "web1:-1", "ssh://-V", "we;b1", "web1/x",
])
def test_anything_but_user_host_port_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not an ssh destination"):
        Destination.parse(text)


def test_what_strict_parsing_still_accepts() -> None:
    assert Destination.parse("deploy_2@web-1.example.") == Destination("web-1.example.", user="deploy_2")
    assert Destination.parse("deploy@[fe80::1%eth0]:22") == Destination("fe80::1%eth0", user="deploy", port=22)
    assert Destination.parse("web_1:65535") == Destination("web_1", port=65535)


def test_every_ssh_invocation_puts_the_destination_after_double_dash(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Even a destination that was never parsed (built by hand, or from an ssh_config) cannot
    become an option: the master, each command, each copy both ways, check and exit."""
    import subprocess

    from builder.machines import ssh

    seen: list[list[str]] = []

    class Done:
        returncode = 0
        stdout = b""

    class Proc:
        def __init__(self, argv: list[str], **_: object) -> None:
            seen.append(list(argv))
            self.returncode = 0
            self.stdin = open(os.devnull, "wb")  # noqa: SIM115 - closed by the code under test
            self.stdout = io.BytesIO(b"")

        def wait(self, timeout: float | None = None) -> int:
            return 0

        def kill(self) -> None:
            pass

    def fake_run(argv: list[str], **_: object) -> Done:
        seen.append(list(argv))
        return Done()

    monkeypatch.setattr(ssh.subprocess, "run", fake_run)
    monkeypatch.setattr(ssh.subprocess, "Popen", Proc)
    (tmp_path / "f").write_text("x")
    dest = Destination("-oProxyCommand=touch /tmp/pwned", user="deploy", port=22)
    with Connection(dest) as conn:
        conn.run(["true"])
        conn.put(tmp_path / "f", "/tmp/f")
        try:
            conn.get("/tmp/f", tmp_path / "back")
        except Exception:  # noqa: BLE001 - the fake stream is no tar; only the argv matters here
            pass
        conn.alive()
        seen.append(conn.argv(["true"]))
        seen.append(conn.argv(tty=True))
    assert len(seen) >= 7 and subprocess is not None
    for argv in seen:
        assert argv[0] == "ssh"
        at = argv.index(dest.host)
        assert argv[at - 1] == "--", argv


def test_no_ssh_on_path_is_a_clear_error_not_a_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from builder.errors import CommandError

    monkeypatch.setenv("PATH", str(tmp_path))  # a folder with no ssh in it
    with pytest.raises(CommandError) as err:
        Connection(Destination("127.0.0.1", port=1)).__enter__()
    assert err.value.returncode == 127
    assert "ssh: not found on PATH" in str(err.value)
    assert "install OpenSSH's client" in (err.value.hint or "")

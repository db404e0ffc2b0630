"""The session daemon: a private socket, the owner's uid only, tokens in memory with a TTL, zeroed when they go."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
import time
from pathlib import Path

import pytest

from nexa.session import client
from nexa.session.daemon import TokenStore
from nexa.session.protocol import NoSessionError, SessionError, env_var_for, parse_ttl, receive, send, socket_path

TOKEN = b"hf_daemonTEST_7f3a9c2e"
NOBODY = 65534


@pytest.fixture
def session(tmp_path, monkeypatch):
    monkeypatch.setenv("NEXA_SESSION_DIR", str(tmp_path / "session"))
    client.start(3600)
    yield tmp_path / "session"
    if client.is_running():
        client.stop()


def _daemon_pid() -> int:
    return client.request("ping")["pid"]


def test_socket_is_private_and_the_daemon_cannot_dump_core(session):
    assert stat.S_IMODE(os.stat(session).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(socket_path()).st_mode) == 0o600
    pid = _daemon_pid()
    limits = open(f"/proc/{pid}/limits").read()
    core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
    assert core.split()[4:6] == ["0", "0"]
    assert client.request("ping")["dumpable"] == 0
    assert TOKEN.decode() not in open(f"/proc/{pid}/cmdline", "rb").read().decode()


def test_tokens_reach_a_child_environment_and_list_shows_no_value(session):
    client.add("hf", "HF_TOKEN", TOKEN, None)
    listed = client.listing()
    assert [(t["name"], t["env"]) for t in listed] == [("hf", "HF_TOKEN")]
    assert 3500 < listed[0]["expires_in_s"] <= 3600
    assert TOKEN.decode() not in repr(listed)
    env, added = client.child_env({"PATH": "/bin"})
    assert added == ["HF_TOKEN"] and env["HF_TOKEN"] == TOKEN.decode() and "HF_TOKEN" not in os.environ
    client.remove("hf")
    assert client.listing() == [] and client.child_env({})[1] == []
    with pytest.raises(SessionError, match="no token named 'hf'"):
        client.remove("hf")


def test_ttl_expiry_and_removal_zero_the_bytes():
    store = TokenStore()
    kept, short = bytearray(b"secret-one"), bytearray(b"secret-two")
    store.add("a", "A_KEY", kept, 3600)
    store.add("b", "B_KEY", short, 0.01)
    time.sleep(0.02)
    store.expire()
    assert [t["name"] for t in store.listing()] == ["a"] and short == bytearray(len(short))
    store.remove("a")
    assert kept == bytearray(len(kept)) and store.listing() == []


@pytest.fixture
def reachable_session(monkeypatch):
    """A session folder whose parents another uid may traverse (pytest's tmp_path is 0700 all the way up)."""
    parent = Path(tempfile.mkdtemp(prefix="nexa-uid-test-"))
    os.chmod(parent, 0o711)
    monkeypatch.setenv("NEXA_SESSION_DIR", str(parent / "session"))
    client.start(3600)
    yield parent / "session"
    if client.is_running():
        client.stop()
    shutil.rmtree(parent)


def test_a_client_of_another_uid_is_refused(reachable_session):
    session = reachable_session
    client.add("hf", "HF_TOKEN", TOKEN, None)
    path = str(socket_path())
    assert _as_nobody(path) == "denied by the 0700 folder"
    os.chmod(session, 0o711)  # open the folder and socket so only the daemon's SO_PEERCRED check stands in the way
    os.chmod(path, 0o666)
    try:
        assert _as_nobody(path).startswith("refused: uid 65534 is not this session's owner")
    finally:
        os.chmod(session, 0o700)
    assert [t["name"] for t in client.listing()] == ["hf"]


def _as_nobody(path: str) -> str:
    """Fork, drop to uid 65534, ask the daemon for every token; the child reports what happened through a pipe."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                conn.connect(path)
            except PermissionError:
                outcome = "denied by the 0700 folder"
            else:
                try:
                    send(conn, {"op": "env"})
                except BrokenPipeError:
                    pass  # refused before the request was read; the refusal is still readable
                header, secret = receive(conn)
                outcome = "GOT TOKENS" if header.get("ok") or secret else header["error"]
            os.write(write_end, outcome.encode())
        except BaseException as exc:  # report anything else to the parent's assertion
            os.write(write_end, repr(exc).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as handle:
        return handle.read().decode()


def test_a_stopped_session_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("NEXA_SESSION_DIR", str(tmp_path / "none"))
    with pytest.raises(NoSessionError, match="no nexa session is running.*nexa session start"):
        client.listing()
    assert client.child_env({"A": "1"}) == ({"A": "1"}, [])


def test_folder_with_open_permissions_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "open"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    monkeypatch.setenv("NEXA_SESSION_DIR", str(folder))
    with pytest.raises(SessionError, match="must be 0700"):
        client.start(60)


def test_names_and_ttls():
    assert env_var_for("hf") == "HF_TOKEN" and env_var_for("wandb") == "WANDB_API_KEY" and env_var_for("MY_KEY") == "MY_KEY"
    with pytest.raises(SessionError, match="no known environment variable"):
        env_var_for("mystery")
    assert parse_ttl("30m") == 1800 and parse_ttl("2h") == 7200 and parse_ttl("45") == 45
    with pytest.raises(SessionError):
        parse_ttl("soon")

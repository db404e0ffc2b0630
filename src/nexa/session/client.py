"""Talking to this user's session daemon: start and stop it, add/list/remove tokens, build a child's environment.

The one way a token leaves the session is :func:`child_env`: an environment mapping for a process
about to be launched (``subprocess.run(..., env=child_env())``). The caller's own ``os.environ`` is
never changed and no token is ever put on a command line.
"""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import sys
import time
from typing import Any, Mapping

from nexa.session.protocol import NoSessionError, SessionError, receive, send, socket_path, wipe

START_TIMEOUT_S = 10.0


def request(op: str, secret: bytes | bytearray = b"", **fields: Any) -> dict[str, Any]:
    """One request to the daemon; its reply header (a reply secret is refused here: see :func:`child_env`)."""
    header, reply_secret = _exchange(op, secret, **fields)
    wipe(reply_secret)
    return header


def _exchange(op: str, secret: bytes | bytearray = b"", **fields: Any) -> tuple[dict[str, Any], bytearray]:
    path = socket_path()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(10.0)
    try:
        conn.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        conn.close()
        raise NoSessionError(f"no nexa session is running (socket {path}); start one with `nexa session start`") from exc
    with conn:
        try:
            send(conn, {"op": op, **fields}, secret)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon refused and closed before reading: its reply is still there to read
        header, reply_secret = receive(conn)
    if not header.get("ok"):
        wipe(reply_secret)
        raise SessionError(header.get("error") or f"the session refused {op!r}")
    return header, reply_secret


def is_running() -> bool:
    try:
        request("ping")
    except NoSessionError:
        return False
    return True


def start(default_ttl_s: float) -> dict[str, Any]:
    """Start the daemon in its own session (it outlives this command); an already running one is kept."""
    if is_running():
        return {**request("ping"), "started": False}
    path = socket_path(create=True)
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH", "LANG", "LC_ALL", "HOME")}
    daemon = subprocess.Popen([sys.executable, "-m", "nexa.session.daemon", str(path), str(default_ttl_s)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              start_new_session=True, env=env, close_fds=True)
    line = daemon.stdout.readline().strip()
    daemon.stdout.close()
    if line != b"ready":
        daemon.wait(timeout=START_TIMEOUT_S)
        message = daemon.stderr.read().decode(errors="replace").strip().splitlines()
        raise SessionError(f"the session daemon did not start: {message[-1] if message else 'no output'}")
    daemon.stderr.close()
    return {**request("ping"), "started": True}


def stop() -> None:
    """Ask the daemon to zero every token and exit; wait until its socket is gone."""
    request("stop")
    deadline = time.monotonic() + START_TIMEOUT_S
    while socket_path().exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def add(name: str, env: str, secret: bytes | bytearray, ttl_s: float | None) -> dict[str, Any]:
    return request("add", secret, name=name, env=env, ttl_s=ttl_s)


def add_from_user(name: str, env: str, ttl_s: float | None) -> dict[str, Any]:
    """Read ``name``'s token from the user (:func:`read_secret`), hand it to the running daemon and wipe this process's
    copy. Nothing is read when no session runs; an empty token is refused; ^C or ^D at the prompt propagate."""
    if not is_running():
        raise NoSessionError("no nexa session is running; start one with `nexa session start`")
    secret = read_secret(name)
    try:
        if not secret:
            raise SessionError("empty token: nothing was stored")
        return add(name, env, secret, ttl_s)
    finally:
        wipe(secret)


def listing() -> list[dict[str, Any]]:
    return request("list")["tokens"]


def remove(name: str) -> None:
    request("remove", name=name)


def read_secret(name: str) -> bytearray:
    """A token as bytes: all of stdin when it is not a terminal (trailing newline and spaces removed), else a
    prompt that does not echo. It never comes from the command line; ^C or ^D at the prompt propagate."""
    if sys.stdin.isatty():
        return bytearray(getpass.getpass(f"token for {name} (hidden): ").strip().encode())
    data = bytearray(sys.stdin.buffer.read())
    while data and data[-1:] in (b"\n", b"\r", b" "):
        del data[-1]
    return data


def child_env(base: Mapping[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """``base`` (default: this process's environment) plus every live session token, and the variables added.

    With no session running the environment is ``base`` unchanged and the list is empty; the caller
    says so to the user (a job that needs a token then fails with its own clear message).
    """
    env = dict(os.environ if base is None else base)
    try:
        header, joined = _exchange("env")
    except NoSessionError:
        return env, []
    try:
        offset, added = 0, []
        for name, size in header["env"]:
            env[name] = joined[offset:offset + size].decode()
            offset += size
            added.append(name)
        return env, added
    finally:
        wipe(joined)

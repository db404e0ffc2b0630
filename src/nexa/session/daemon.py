"""The session daemon: one process per user that holds tokens in memory and hands them to that user only.

Started by ``nexa session start`` as ``python -m nexa.session.daemon SOCKET TTL`` (no secret on its
command line). Before it accepts anything it forbids core dumps (``RLIMIT_CORE=0``) and marks itself
non-dumpable (``prctl(PR_SET_DUMPABLE, 0)``: no core file, no ptrace, ``/proc/<pid>/mem`` closed to
other processes of the same user). Every connection's peer uid is read with ``SO_PEERCRED`` and any
uid but the owner's is refused. Tokens live in ``bytearray``s with an expiry; removal, expiry and
shutdown overwrite them with zeros.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from nexa.session.protocol import SessionError, receive, send, wipe

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3
CONNECTION_TIMEOUT_S = 5.0


@dataclass
class Token:
    env: str
    secret: bytearray
    expires_at: float


class TokenStore:
    """Name -> token, in memory only; every way out of the store zeroes the bytes first."""

    def __init__(self):
        self._tokens: dict[str, Token] = {}

    def add(self, name: str, env: str, secret: bytearray, ttl_s: float) -> None:
        self.remove(name)
        self._tokens[name] = Token(env, secret, time.monotonic() + ttl_s)

    def remove(self, name: str) -> bool:
        token = self._tokens.pop(name, None)
        if token is None:
            return False
        wipe(token.secret)
        return True

    def expire(self) -> None:
        now = time.monotonic()
        for name in [n for n, t in self._tokens.items() if t.expires_at <= now]:
            self.remove(name)

    def clear(self) -> None:
        for name in list(self._tokens):
            self.remove(name)

    def listing(self) -> list[dict]:
        now = time.monotonic()
        return [{"name": n, "env": t.env, "expires_in_s": round(t.expires_at - now, 1)} for n, t in sorted(self._tokens.items())]

    def items(self) -> list[tuple[str, Token]]:
        return sorted(self._tokens.items())


def harden() -> int:
    """No core dumps, not dumpable; returns the dumpable flag read back (0 when it worked)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")
    return libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)


def peer_uid(conn: socket.socket) -> int:
    _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid


class Daemon:
    def __init__(self, path: Path, default_ttl_s: float):
        self.path, self.default_ttl_s = path, default_ttl_s
        self.store = TokenStore()
        self.running = True
        self.dumpable = -1

    def serve(self) -> None:
        self.dumpable = harden()
        listener = self._listen()
        signal.signal(signal.SIGTERM, self._stop_signal)
        signal.signal(signal.SIGINT, self._stop_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        _detach_output()
        try:
            while self.running:
                self.store.expire()
                try:
                    conn, _ = listener.accept()
                except (socket.timeout, InterruptedError):
                    continue
                with conn:
                    try:
                        self._serve_one(conn)
                    except OSError:
                        continue  # a client that vanished mid-answer costs only its own connection
        finally:
            self.store.clear()
            listener.close()
            self.path.unlink(missing_ok=True)

    def _listen(self) -> socket.socket:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.path.unlink(missing_ok=True)
        previous = os.umask(0o177)  # the socket is created 0600: no window where others could connect
        try:
            listener.bind(str(self.path))
        finally:
            os.umask(previous)
        os.chmod(self.path, 0o600)
        listener.listen(16)
        listener.settimeout(1.0)
        return listener

    def _stop_signal(self, *_):
        self.running = False

    def _serve_one(self, conn: socket.socket) -> None:
        conn.settimeout(CONNECTION_TIMEOUT_S)
        uid = peer_uid(conn)
        if uid != os.getuid():
            send(conn, {"ok": False, "error": f"refused: uid {uid} is not this session's owner (uid {os.getuid()})"})
            return
        secret = bytearray()
        try:
            header, secret = receive(conn)
            self._answer(conn, header, secret)
        except (SessionError, OSError, ValueError) as exc:
            send(conn, {"ok": False, "error": f"bad request: {exc}"})
        finally:
            wipe(secret)

    def _answer(self, conn: socket.socket, header: dict, secret: bytearray) -> None:
        op = header.get("op")
        self.store.expire()
        if op == "ping":
            send(conn, {"ok": True, "pid": os.getpid(), "tokens": len(self.store.items()), "dumpable": self.dumpable})
        elif op == "add":
            if not secret:
                raise SessionError("an empty token is not stored")
            ttl = float(header.get("ttl_s") or self.default_ttl_s)
            self.store.add(str(header["name"]), str(header["env"]), bytearray(secret), ttl)
            send(conn, {"ok": True, "name": header["name"], "expires_in_s": ttl})
        elif op == "list":
            send(conn, {"ok": True, "tokens": self.store.listing()})
        elif op == "remove":
            removed = self.store.remove(str(header.get("name")))
            send(conn, {"ok": removed, **({} if removed else {"error": f"no token named {header.get('name')!r} in this session"})})
        elif op == "env":
            self._send_env(conn)
        elif op == "stop":
            self.store.clear()
            self.running = False
            send(conn, {"ok": True})
        else:
            send(conn, {"ok": False, "error": f"unknown op {op!r}"})

    def _send_env(self, conn: socket.socket) -> None:
        """Every live token as (env var, length) in the header and the bytes concatenated after it."""
        items = self.store.items()
        joined = bytearray(sum(len(t.secret) for _, t in items))  # sized once: no reallocated copies left behind
        try:
            offset = 0
            for _, token in items:
                joined[offset:offset + len(token.secret)] = token.secret
                offset += len(token.secret)
            send(conn, {"ok": True, "env": [[t.env, len(t.secret)] for _, t in items]}, joined)
        finally:
            wipe(joined)


def _detach_output() -> None:
    """Point stdout/stderr at /dev/null once the starter has read "ready": it closes its end of both pipes."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)


def main(argv: list[str]) -> None:
    path, ttl = Path(argv[0]), float(argv[1])
    os.chdir("/")
    Daemon(path, ttl).serve()


if __name__ == "__main__":
    main(sys.argv[1:])

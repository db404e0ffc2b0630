"""Where the session socket lives and how a message crosses it, shared by the daemon and its clients.

A message is one JSON header line that never holds a secret, followed by ``secret_len`` raw bytes.
Secrets travel as bytes so the daemon can keep them in a ``bytearray`` it overwrites on removal;
a JSON string would leave immutable copies behind. Only the standard library is imported here,
so the daemon starts in a fraction of a second.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import tempfile
from pathlib import Path
from typing import Any

SOCKET_NAME = "session.sock"
MAX_HEADER = 64 * 1024
MAX_SECRET = 64 * 1024
DEFAULT_TTL_S = 8 * 3600
# Short names for the tokens people use most, and the environment variable each becomes in a child.
ENV_NAMES = {"hf": "HF_TOKEN", "huggingface": "HF_TOKEN", "wandb": "WANDB_API_KEY", "openai": "OPENAI_API_KEY",
             "anthropic": "ANTHROPIC_API_KEY", "tailscale": "TS_AUTHKEY", "aws": "AWS_SECRET_ACCESS_KEY"}
_ENV_VAR = re.compile(r"^[A-Z][A-Z0-9_]*$")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
_TTL = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")


class SessionError(RuntimeError):
    """A session request that cannot be served; the message says what to do."""


class NoSessionError(SessionError):
    """No daemon answers on this user's socket."""


def session_dir(create: bool = False) -> Path:
    """This user's private folder: ``$NEXA_SESSION_DIR``, ``$XDG_RUNTIME_DIR/nexa`` or ``<tmp>/nexa-<uid>``.

    It must be a real folder owned by this user with no group/other permissions (0700); anything
    else is refused rather than used, since another user could then reach or replace the socket.
    """
    if os.environ.get("NEXA_SESSION_DIR"):
        folder = Path(os.environ["NEXA_SESSION_DIR"])
    elif os.environ.get("XDG_RUNTIME_DIR"):
        folder = Path(os.environ["XDG_RUNTIME_DIR"]) / "nexa"
    else:
        folder = Path(tempfile.gettempdir()) / f"nexa-{os.getuid()}"
    if create and not folder.exists():
        folder.mkdir(mode=0o700, parents=True)
        os.chmod(folder, 0o700)
    if folder.exists():
        _check_private(folder)
    return folder


def _check_private(folder: Path) -> None:
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode):
        raise SessionError(f"{folder} is not a folder (a symlink or file is never used for the session socket)")
    if info.st_uid != os.getuid():
        raise SessionError(f"{folder} belongs to uid {info.st_uid}, not you (uid {os.getuid()}); remove it or set NEXA_SESSION_DIR")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise SessionError(f"{folder} has mode {oct(stat.S_IMODE(info.st_mode))}; the session folder must be 0700 (chmod 700 it)")


def socket_path(create: bool = False) -> Path:
    return session_dir(create) / SOCKET_NAME


def env_var_for(name: str, env: str | None = None) -> str:
    """The variable a token named ``name`` becomes in a child's environment (``hf`` -> ``HF_TOKEN``)."""
    if not _NAME.match(name):
        raise SessionError(f"token name {name!r}: use letters, digits, '_', '-' or '.' (e.g. hf, wandb, openai)")
    chosen = env or ENV_NAMES.get(name.lower()) or (name if _ENV_VAR.match(name) else None)
    if chosen is None:
        raise SessionError(f"token name {name!r} has no known environment variable; use one of {sorted(ENV_NAMES)}, "
                           "an upper-case variable name (MY_API_KEY), or pass --env VAR")
    if not _ENV_VAR.match(chosen):
        raise SessionError(f"--env {chosen!r}: an environment variable name is upper-case letters, digits and '_'")
    return chosen


def parse_ttl(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``8h`` or ``1d`` as seconds (> 0)."""
    match = _TTL.match(text.strip().lower())
    if match is None or float(match[1]) <= 0:
        raise SessionError(f"TTL {text!r}: expected a positive duration such as 90s, 30m, 8h or 1d")
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]


def format_duration(seconds: float) -> str:
    """A token's time left as people read it: ``7h59m``, or ``4m05s`` under an hour."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def wipe(buffer: bytearray) -> None:
    """Overwrite a secret in place (same length: no reallocation, the old bytes are gone)."""
    buffer[:] = bytes(len(buffer))


def send(conn: socket.socket, header: dict[str, Any], secret: bytes | bytearray = b"") -> None:
    line = json.dumps({**header, "secret_len": len(secret)}).encode() + b"\n"
    conn.sendall(line)
    if secret:
        conn.sendall(secret)


def receive(conn: socket.socket) -> tuple[dict[str, Any], bytearray]:
    """One message: its header and its secret bytes (a fresh bytearray the caller wipes when done)."""
    buffer = bytearray()
    try:
        while b"\n" not in buffer:
            _read_more(conn, buffer, MAX_HEADER + MAX_SECRET)
            if len(buffer) > MAX_HEADER and b"\n" not in buffer[:MAX_HEADER]:
                raise SessionError("malformed session message (header too long)")
        end = buffer.index(b"\n")
        header = json.loads(bytes(buffer[:end]))
        if not isinstance(header, dict):
            raise SessionError("malformed session message (header is not an object)")
        size = int(header.get("secret_len", 0))
        if not 0 <= size <= MAX_SECRET:
            raise SessionError(f"secret of {size} bytes refused (at most {MAX_SECRET})")
        while len(buffer) < end + 1 + size:
            _read_more(conn, buffer, end + 1 + size)
        with memoryview(buffer) as view:
            return header, bytearray(view[end + 1:end + 1 + size])
    finally:
        wipe(buffer)


def _read_more(conn: socket.socket, buffer: bytearray, limit: int) -> None:
    chunk = bytearray(min(4096, max(1, limit - len(buffer))))
    count = conn.recv_into(chunk)
    if count == 0:
        wipe(chunk)
        raise SessionError("the session connection closed mid-message")
    with memoryview(chunk) as view:
        buffer += view[:count]
    wipe(chunk)

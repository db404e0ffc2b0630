"""``nexa session start|add NAME|list|remove NAME|stop``: tokens held in memory by a per-user daemon.

A token is read from stdin (piped) or a hidden prompt, never from the command line, and is shown
nowhere: ``list`` prints names, variables and time left only.
"""

from __future__ import annotations

from typing import Optional

import typer

from nexa.ledger.console import JSON, console, emit_result, fail, table

app = typer.Typer(help="Hold tokens (HF, W&B, API keys) in memory for this session; jobs get them in their environment.",
                  no_args_is_help=True)


def _call(function, *args):
    from nexa.session.protocol import SessionError

    try:
        return function(*args)
    except (SessionError, OSError) as exc:
        fail(str(exc))


@app.command("start")
def start_cmd(ttl: str = typer.Option("8h", "--ttl", help="Default lifetime of a token (90s, 30m, 8h, 1d)."),
              json_out: bool = JSON) -> None:
    """Start this user's session daemon (socket 0600 in a 0700 folder; no core dumps)."""
    from nexa.session import client
    from nexa.session.protocol import parse_ttl, socket_path

    info = _call(client.start, _call(parse_ttl, ttl))
    where = socket_path()
    console.print(f"session {'started' if info['started'] else 'already running'} (pid {info['pid']}, socket {where})", highlight=False)
    emit_result({"status": "running", "pid": info["pid"], "socket": str(where), "started": info["started"]}, json_out)


@app.command("add")
def add_cmd(name: str = typer.Argument(..., help="hf, wandb, openai, ... or an env var name (MY_API_KEY)."),
            ttl: Optional[str] = typer.Option(None, "--ttl", help="Lifetime of this token (default: the session's)."),
            env: Optional[str] = typer.Option(None, "--env", help="Environment variable it becomes in jobs (default from NAME)."),
            json_out: bool = JSON) -> None:
    """Add a token, read from stdin when piped or from a hidden prompt (never from the command line)."""
    from nexa.session import client
    from nexa.session.protocol import env_var_for, format_duration, parse_ttl

    variable = _call(env_var_for, name, env)
    seconds = _call(parse_ttl, ttl) if ttl else None
    try:
        reply = _call(client.add_from_user, name, variable, seconds)
    except (KeyboardInterrupt, EOFError):
        console.print("\ncancelled: nothing was stored")
        raise typer.Exit(130) from None
    console.print(f"stored {name} (jobs get it as {variable}; expires in {format_duration(reply['expires_in_s'])})", highlight=False)
    emit_result({"status": "stored", "name": name, "env": variable, "expires_in_s": reply["expires_in_s"]}, json_out)


@app.command("list")
def list_cmd(json_out: bool = JSON) -> None:
    """Token names, their environment variable and time left; never their values."""
    from nexa.session import client
    from nexa.session.protocol import format_duration

    tokens = _call(client.listing)
    emit_result({"tokens": tokens}, json_out, table("session tokens", ["name", "env", "expires in"],
                                                    [(t["name"], t["env"], format_duration(t["expires_in_s"])) for t in tokens]))


@app.command("remove")
def remove_cmd(name: str = typer.Argument(...), json_out: bool = JSON) -> None:
    """Remove a token (its bytes are overwritten in the daemon's memory)."""
    from nexa.session import client

    _call(client.remove, name)
    console.print(f"removed {name}")
    emit_result({"status": "removed", "name": name}, json_out)


@app.command("stop")
def stop_cmd(json_out: bool = JSON) -> None:
    """Zero every token and stop the daemon."""
    from nexa.session import client

    _call(client.stop)
    console.print("session stopped; its tokens were wiped")
    emit_result({"status": "stopped"}, json_out)

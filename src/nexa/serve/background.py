"""``nexa serve`` on a loopback port inside this process: what lets tools that speak only HTTP (the OpenAI
SDK, lm-evaluation-harness's ``local-completions``) evaluate a bundle exactly as its users would reach it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def serving(bundle: str | Path, token: str | None = None, startup_timeout_s: float = 60.0, **app_options) -> Iterator[str]:
    """Serve ``bundle`` on 127.0.0.1 at a free port for the duration of the block; yields the base URL
    (``http://127.0.0.1:PORT``, without ``/v1``). ``app_options`` go to :func:`nexa.serve.app.create_app`."""
    from nexa.serve.app import create_app

    with on_loopback(create_app(bundle, token=token, **app_options), "nexa serve", startup_timeout_s) as url:
        yield url


@contextmanager
def on_loopback(app, what: str, startup_timeout_s: float = 60.0) -> Iterator[str]:
    """Any ASGI ``app`` under uvicorn on 127.0.0.1 at a free port, from a background thread, for the block."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name=f"nexa-loopback-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"{what} did not start on 127.0.0.1:{port} within {startup_timeout_s:.0f} s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)

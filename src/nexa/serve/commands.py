"""Top-level command of the serving layer: ``nexa serve BUNDLE --port P``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nexa.ledger.console import FALLBACK_URL, console, fail, require_bundle, table
from nexa.serve.limits import DEFAULT_MAX_BATCH, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_TOKENS_CAP, exposure_warning


def serve(bundle: Path = typer.Argument(..., help="Bundle folder (manifest.json inside), e.g. the verify stage's bundle/."),
          port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port."),
          host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
          token: Optional[str] = typer.Option(None, "--token", envvar="NEXA_SERVE_TOKEN", show_default=False,
                                              help="Bearer token clients must send (default: $NEXA_SERVE_TOKEN; none = open)."),
          max_tokens_cap: int = typer.Option(DEFAULT_MAX_TOKENS_CAP, "--max-tokens-cap", min=1,
                                             help="Largest max_tokens a request may ask for (more is a 400)."),
          max_body_bytes: int = typer.Option(DEFAULT_MAX_BODY_BYTES, "--max-body-bytes", min=1,
                                             help="Largest request body (more is a 413)."),
          max_batch: int = typer.Option(DEFAULT_MAX_BATCH, "--max-batch", min=1,
                                        help="Most prompts answered together by dynamic batching of greedy requests "
                                             "(1 = one request at a time)."),
          threads: int = typer.Option(1, "--threads", min=1,
                                      help="torch CPU threads. 1 suits small bundles: intra-op threads only add "
                                           "contention for matrices this small (measured 126 ms vs 2.1 s per request "
                                           "on a loaded 2-core machine)."),
          device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
          fallback_url: Optional[str] = FALLBACK_URL,
          log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level.")) -> None:
    """Serve a bundle over an OpenAI-compatible HTTP API (completions, chat, models, healthz, status, metrics).

    Models are "<bundle>" (the router picks the capability) and "<bundle>:<capability>". The bundles are
    char-level completion models without a chat template, so a chat request's prompt is the content of its
    last user message.
    """
    import torch
    import uvicorn

    from nexa.serve.app import create_app
    from nexus import BundleError

    require_bundle(bundle)
    if warning := exposure_warning(host, token):
        console.print(f"[yellow]warning:[/yellow] {warning}")
    torch.set_num_threads(threads)
    try:
        app = create_app(bundle, token=token, max_tokens_cap=max_tokens_cap, max_body_bytes=max_body_bytes,
                         max_batch=max_batch, device=device, fallback_url=fallback_url)
    except BundleError as exc:
        fail(f"cannot load bundle: {exc}")
    _show(app, host, port, bool(token), max_batch)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)


def _show(app, host: str, port: int, auth: bool, max_batch: int) -> None:
    import torch

    engine = app.state.engine
    rows = [("bundle", f"{engine.name} ({engine.model.path})"), ("models", ", ".join(engine.model_ids())),
            ("url", f"http://{host}:{port}/v1"), ("auth", "bearer token" if auth else "none"),
            ("max_tokens cap", engine.max_tokens_cap), ("max batch", max_batch), ("torch threads", torch.get_num_threads()),
            ("context", engine.model.spec.max_position_embeddings)]
    console.print(table("nexa serve", ["", ""], rows))

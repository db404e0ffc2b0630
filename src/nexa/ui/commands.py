"""Top-level commands of the UI layer: ``nexa ui`` (the dashboard) and ``nexa report`` (HTML / PDF export).

Thin: parse, call :mod:`nexa.ui.app` or :mod:`nexa.ui.report`, print. FastAPI, Plotly and Playwright are
imported inside the commands so ``nexa --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nexa.ledger import Lab
from nexa.ledger.console import FOUND_LAB, JSON, console, emit_result, fail, failing_on


def ui(lab: Lab = FOUND_LAB, port: int = typer.Option(8050, "--port", min=1, max=65535, help="TCP port."),
       host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on.")) -> None:
    """Browse the lab: leaderboard and plots, runs and lineage, verify reports, feedback rounds, the review queue."""
    from nexa.ui.app import serve

    console.print(f"dashboard of [bold]{lab.root}[/bold] at http://{host}:{port}/  (Ctrl-C to stop)")
    serve(lab.root, host, port)


def report(run_id: str = typer.Option(..., "--run", help="Run to report on (a pipeline run shows every stage)."),
           fmt: str = typer.Option("html", "--format", help="html (self-contained, interactive) or pdf (headless Chromium)."),
           out: Optional[Path] = typer.Option(None, "--out", help="Output file (default: ./report-RUN.FORMAT)."),
           lab: Lab = FOUND_LAB, json_out: bool = JSON) -> None:
    """Export one run's report: leaderboard with plots, verification gate, feedback round, stages."""
    from nexa.ui.browser import BrowserUnavailableError
    from nexa.ui.report import FORMATS, collect, default_out, write_report

    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    target = out or default_out(run_id, fmt)
    with failing_on(BrowserUnavailableError):  # a missing file or run is a user error the root command prints
        written = write_report(collect(lab.root, run_id), fmt, target)
    emit_result({"run_id": run_id, "status": "succeeded", "format": fmt,
                 "outputs": [{"path": str(written), "bytes": written.stat().st_size}]}, json_out,
                f"wrote [bold]{written}[/bold] ({written.stat().st_size} bytes)")

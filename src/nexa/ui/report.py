"""The exported report of one run: one self-contained HTML file (plotly.js inlined, works offline) or a PDF.

``nexa report`` and the pipeline's ``report`` stage both build a :class:`ReportData` and call
:func:`write_report`; the sections are the dashboard's own (``nexa.ui.pages``).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nexa.ledger.manifests import RunManifest
from nexa.ledger.store import atomic_write_bytes
from nexa.ui import labview, pages
from nexa.ui.labview import Artifact, Missing

FORMATS = ("html", "pdf")


@dataclass
class ReportData:
    """What a report shows; every part may be empty, and the page then says what is missing."""

    title: str
    run: RunManifest | None = None
    leaderboard: list[dict[str, Any]] = field(default_factory=list)
    verify: list[tuple[Artifact, dict | Missing]] = field(default_factory=list)
    feedback: list[tuple[Artifact, dict | Missing]] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)


def collect(lab_root: str | Path, run_id: str) -> ReportData:
    """A run's report from the ledger: its leaderboard(s), verify report, feedback round and stages."""
    view = labview.open_lab(lab_root)
    run = view.by_id.get(run_id)
    if run is None:
        known = [r.run_id for r in view.runs][-5:]
        raise FileNotFoundError(f"no run {run_id!r} in {view.lab.manifests_dir}; latest runs: {known or 'none'}")
    return ReportData(title=f"NexaCompute run {run_id} ({run.run_type})", run=run,
                      leaderboard=labview.leaderboard_rows(view, run), verify=labview.verify_reports(view, run),
                      feedback=labview.feedback_rounds(view, run), stages=labview.stage_rows(view, run),
                      missing=labview.missing_outputs(run))


def render(data: ReportData) -> str:
    """The report as one HTML document with plotly.js inlined."""
    from nexa.ui.plots import plotly_js

    parts = [pages.message(f"{m.what}: {m.reason}", "error") for m in data.missing]
    if data.run is not None:
        run = data.run
        parts.append(pages.table([{"run_id": run.run_id, "type": run.run_type, "status": run.status,
                                   "started": run.started_at.isoformat(timespec="seconds"), "cost_usd": run.cost_estimate_usd_total,
                                   "code": run.code_version, "config_hash": (run.config_hash or "")[:16]}],
                                 ["run_id", "type", "status", "started", "cost_usd", "code", "config_hash"], "manifest"))
    parts.append("<h2>Leaderboard</h2>" + pages.leaderboard(data.leaderboard, data.leaderboard, {}, interactive=False))
    parts.append("<h2>Teacher-free verification</h2>" + ("".join(pages.verify_section(a, r) for a, r in data.verify)
                 or pages.message("no verify report among this run's outputs", "info")))
    if data.feedback:
        parts.append("<h2>Feedback round: before / after</h2>" + "".join(pages.feedback_section(a, r) for a, r in data.feedback))
    if data.stages:
        parts.append(f"<h2>Stages ({sum(s['seconds'] for s in data.stages):.1f} s)</h2>"
                     + pages.table(data.stages, list(data.stages[0]), "stages"))
    return pages.page(data.title, "".join(parts), f"<script>{plotly_js()}</script>", nav=False)


def write_report(data: ReportData, fmt: str, out: Path) -> Path:
    """Write ``out`` atomically as HTML, or as a PDF printed by headless Chromium from that HTML."""
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {FORMATS}, not {fmt!r}")
    document = render(data).encode("utf-8")
    if fmt == "html":
        atomic_write_bytes(out, document)
        return out
    from nexa.ui.browser import html_to_pdf

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nexa-report-") as work:
        source = Path(work) / "report.html"
        source.write_bytes(document)
        printed = html_to_pdf(source, Path(work) / "report.pdf")
        atomic_write_bytes(out, printed.read_bytes())
    return out


def default_out(run_id: str, fmt: str) -> Path:
    return Path(os.getcwd()) / f"report-{run_id}.{fmt}"

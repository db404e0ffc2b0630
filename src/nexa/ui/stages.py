"""Pipeline stage of the UI layer: the run's self-contained HTML report, by the same code as ``nexa report``."""

from __future__ import annotations

from nexa.ledger.runs import load_run
from nexa.ui import labview
from nexa.ui.labview import Artifact
from nexa.ui.report import ReportData, write_report


def report(ctx, eval: str = "eval", verify: str = "verify", title: str = "NexaCompute golden pipeline",
           feedback: str | None = None) -> dict:
    """Leaderboard, plots, the verification verdict (and a feedback round's before/after) in ``report.html``.

    The pipeline's own run is still open here, so its stages so far come from its manifest and the
    artifacts from this stage's inputs.
    """
    pipeline = load_run(ctx.lab, ctx.run.manifest.parent_run_id) if ctx.run.manifest.parent_run_id else ctx.run.manifest
    view = labview.open_lab(ctx.lab.root)
    started = pipeline.started_at.isoformat(timespec="seconds")
    evals = Artifact(pipeline.run_id, eval, ctx.input(eval))
    rows = [{**r, "run_id": pipeline.run_id, "source": eval, "run_started": started}
            for r in labview.leaderboard_rows_of(evals)]
    verifies = [Artifact(pipeline.run_id, verify, ctx.input(verify))]
    rounds = [Artifact(pipeline.run_id, feedback, ctx.input(feedback))] if feedback else []
    data = ReportData(title=title, run=pipeline, leaderboard=rows, verify=labview.read_each(verifies, labview.VERIFY_FILES),
                      feedback=labview.read_each(rounds, labview.FEEDBACK_FILE), stages=labview.stage_rows(view, pipeline))
    out = write_report(data, "html", ctx.out / "report.html")
    return {"report": "report.html", "bytes": out.stat().st_size}

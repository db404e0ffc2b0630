"""Pipeline stage of the UI layer: the static HTML report of a pipeline's results."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from nexa.ui.report import render_report


def report(ctx, eval: str = "eval", verify: str = "verify", title: str = "NexaCompute golden pipeline",
           feedback: str | None = None) -> dict:
    """Leaderboard, plots, the verification verdict (and a feedback round's before/after) in ``report.html``."""
    leaderboard = pq.read_table(ctx.input(eval) / "leaderboard.parquet").to_pylist()
    verify_report = json.loads((ctx.input(verify) / "bundle" / "verify_report.json").read_text())
    stages = [{"stage": name, **{k: v for k, v in ctx.summary_of(name).items() if isinstance(v, (int, float, str))}}
              for name in (eval, verify)]
    extra = [_feedback_section(ctx.input(feedback) / "feedback.json")] if feedback else []
    page = render_report(title, leaderboard, verify_report, [{"stage": s["stage"]} for s in stages], extra)
    (ctx.out / "report.html").write_text(page, encoding="utf-8")
    return {"report": "report.html", "bytes": len(page)}


def _feedback_section(path) -> tuple[str, str]:
    """Before/after scores of the feedback round, per capability (``feedback.json`` of nexa.feedback)."""
    from nexa.ui.report import _table

    rows = [{"capability": cap, "before": v["before"], "after": v["after"],
             "change": None if v["after"] is None else round(v["after"] - v["before"], 4)}
            for cap, v in sorted(json.loads(path.read_text()).items())]
    return "Feedback round: before / after", _table(rows, ["capability", "before", "after", "change"])

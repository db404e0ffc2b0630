"""Pipeline stage of the UI layer: the static HTML report of a pipeline's results."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from nexa.ui.report import render_report


def report(ctx, eval: str = "eval", verify: str = "verify", title: str = "NexaCompute golden pipeline") -> dict:
    """Leaderboard, plots and the verification verdict in one self-contained ``report.html``."""
    leaderboard = pq.read_table(ctx.input(eval) / "leaderboard.parquet").to_pylist()
    verify_report = json.loads((ctx.input(verify) / "bundle" / "verify_report.json").read_text())
    stages = [{"stage": name, **{k: v for k, v in ctx.summary_of(name).items() if isinstance(v, (int, float, str))}}
              for name in (eval, verify)]
    page = render_report(title, leaderboard, verify_report, [{"stage": s["stage"]} for s in stages])
    (ctx.out / "report.html").write_text(page, encoding="utf-8")
    return {"report": "report.html", "bytes": len(page)}

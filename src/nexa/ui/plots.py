"""Plotly figures of the dashboard and the report, as ``<div>``s that need only the local plotly.js.

Each plot gets a fixed element id (``plot-…``) so the browser tests and users can find it; the
figures carry their data, so hovering shows the exact numbers behind every point.
"""

from __future__ import annotations

from collections import defaultdict
from functools import lru_cache
from typing import Any

from nexa.ui.labview import HEADLINE_METRIC

PLOT_IDS = {"cost_quality": "plot-cost-quality", "capability": "plot-capability-scores",
            "over_time": "plot-scores-over-time", "retention": "plot-retention", "feedback": "plot-feedback"}


@lru_cache(maxsize=1)
def plotly_js() -> str:
    """The plotly.js bundle shipped inside the ``plotly`` package (nothing is fetched from the network)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def div(figure, plot: str) -> str:
    """The figure as a ``<div>`` (plotly.js must already be on the page)."""
    figure.update_layout(margin={"l": 50, "r": 20, "t": 40, "b": 40}, height=320, template="plotly_white")
    return figure.to_html(full_html=False, include_plotlyjs=False, div_id=PLOT_IDS[plot],
                          config={"displaylogo": False, "responsive": True})


def _headline(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["metric"] == HEADLINE_METRIC] or rows


def cost_quality(rows: list[dict[str, Any]]):
    """One point per (model, run): its total eval cost in $ (x) against its mean score over capabilities (y)."""
    import plotly.graph_objects as go

    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in _headline(rows):
        groups[(row["role"], row["model"], row["run_id"])].append(row)
    figure = go.Figure()
    for role in sorted({key[0] for key in groups}):
        mine = [(key, items) for key, items in groups.items() if key[0] == role]
        figure.add_trace(go.Scatter(
            x=[sum(r["cost_usd"] for r in items) for _, items in mine],
            y=[sum(r["score"] for r in items) / len(items) for _, items in mine],
            text=[f"{key[1]} · run {key[2]}" for key, _ in mine], mode="markers", name=role, marker={"size": 11},
            hovertemplate="%{text}<br>cost $%{x:.6f}<br>mean score %{y:.3f}<extra></extra>"))
    span = max((sum(r["cost_usd"] for r in items) for items in groups.values()), default=0.0) or 0.01  # from $0
    figure.update_layout(title="Cost vs quality", xaxis_title="cost of the eval run ($)", yaxis_title="mean score",
                         xaxis={"range": [-0.05 * span, 1.15 * span], "tickprefix": "$"})
    return figure


def capability_scores(rows: list[dict[str, Any]]):
    """Grouped bars: one group per capability, one bar per model (latest run of each model)."""
    import plotly.graph_objects as go

    latest: dict[tuple, dict] = {}
    for row in sorted(_headline(rows), key=lambda r: r["run_started"]):
        latest[(row["model"], row["capability"])] = row
    capabilities = sorted({c for _, c in latest})
    figure = go.Figure()
    for model in dict.fromkeys(m for m, _ in latest):
        have = [c for c in capabilities if (model, c) in latest]
        figure.add_trace(go.Bar(x=have, y=[latest[(model, c)]["score"] for c in have], name=model))
    figure.update_layout(title="Scores per capability", barmode="group", yaxis_title="score", yaxis_range=[0, 1.05])
    return figure


def scores_over_time(rows: list[dict[str, Any]]):
    """One line per (model, capability): its score at each run that measured it, by the run's start time."""
    import plotly.graph_objects as go

    series: dict[tuple, list[dict]] = defaultdict(list)
    for row in _headline(rows):
        series[(row["model"], row["capability"])].append(row)
    figure = go.Figure()
    for (model, capability), items in sorted(series.items()):
        items.sort(key=lambda r: r["run_started"])
        figure.add_trace(go.Scatter(x=[r["run_started"] for r in items], y=[r["score"] for r in items],
                                    mode="lines+markers", name=f"{model} · {capability}",
                                    text=[r["run_id"] for r in items],
                                    hovertemplate="run %{text}<br>%{x}<br>score %{y:.3f}<extra></extra>"))
    figure.update_layout(title="Scores over time (across runs)", xaxis_title="run started (UTC)", yaxis_title="score",
                         yaxis_range=[0, 1.05])
    return figure


def retention(report: dict[str, Any], cis: dict[str, list[float]] | None = None):
    """Retention per capability against the gate, with its interval as error bars when the report has one."""
    import plotly.graph_objects as go

    names = sorted(report.get("retention", {}))
    values = [report["retention"][n] for n in names]
    gate = report.get("retain_fraction", 0.0)
    error = None
    cis = {n: v for n, v in (cis or {}).items() if isinstance(v, (list, tuple)) and len(v) == 2}
    if cis:
        error = {"type": "data", "symmetric": False,
                 "array": [max(cis[n][1] - v, 0) if n in cis else 0 for n, v in zip(names, values)],
                 "arrayminus": [max(v - cis[n][0], 0) if n in cis else 0 for n, v in zip(names, values)]}
    figure = go.Figure(go.Bar(x=names, y=values, error_y=error, name="student / teacher",
                              marker_color=["#2a9d55" if v >= gate else "#d1495b" for v in values]))
    figure.add_hline(y=gate, line_dash="dash", annotation_text=f"gate {gate}")
    figure.update_layout(title="Retention per capability", yaxis_title="student / teacher")
    return figure


def feedback(result: dict[str, dict[str, float | None]]):
    """Before and after bars per capability of one feedback round."""
    import plotly.graph_objects as go

    names = sorted(result)
    figure = go.Figure([go.Bar(x=names, y=[result[n].get(s) for n in names], name=s) for s in ("before", "after")])
    figure.update_layout(title="Feedback round: before / after", barmode="group", yaxis_title="score", yaxis_range=[0, 1.05])
    return figure

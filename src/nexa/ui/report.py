"""The static HTML report: leaderboard, per-capability scores, retention against the gate, cost vs quality.

Plots are rendered with matplotlib (Agg) and embedded as base64 PNGs so the report is one file
that opens anywhere, offline.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def scores_plot(rows: list[dict[str, Any]]) -> str:
    """Grouped bars: one group per capability, one bar per model."""
    capabilities = sorted({r["capability"] for r in rows})
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, ax = plt.subplots(figsize=(7, 3.2))
    width = 0.8 / max(len(models), 1)
    for i, model in enumerate(models):
        values = [next((r["score"] for r in rows if r["model"] == model and r["capability"] == c), 0) for c in capabilities]
        ax.bar([x + i * width for x in range(len(capabilities))], values, width, label=model)
    ax.set_xticks([x + width * (len(models) - 1) / 2 for x in range(len(capabilities))], capabilities)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("exact match")
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def retention_plot(retention: dict[str, float], retain_fraction: float) -> str:
    fig, ax = plt.subplots(figsize=(7, 2.6))
    names = sorted(retention)
    ax.bar(names, [retention[n] for n in names], color=["tab:green" if retention[n] >= retain_fraction else "tab:red" for n in names])
    ax.axhline(retain_fraction, color="black", linestyle="--", linewidth=1, label=f"gate {retain_fraction}")
    ax.set_ylim(0, max(1.1, max(retention.values(), default=1) + 0.05))
    ax.set_ylabel("student / teacher")
    ax.legend(fontsize=8)
    return _png(fig)


def cost_quality_plot(rows: list[dict[str, Any]]) -> str:
    """Mean score against mean latency per model: what each point of quality costs at inference."""
    fig, ax = plt.subplots(figsize=(5, 3))
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        ax.scatter(sum(r["latency_ms"] for r in mine) / len(mine), sum(r["score"] for r in mine) / len(mine), label=model, s=50)
    ax.set_xlabel("latency per prompt (ms)")
    ax.set_ylabel("mean exact match")
    ax.legend(fontsize=8)
    return _png(fig)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def render_report(title: str, leaderboard: list[dict[str, Any]], verify: dict[str, Any] | None,
                  stages: list[dict[str, Any]], extra_sections: list[tuple[str, str]] = ()) -> str:
    """One self-contained HTML page."""
    sections = [
        ("Leaderboard", _table(leaderboard, ["model", "role", "capability", "metric", "score", "n", "latency_ms", "cost_usd", "judge_model_id"])),
        ("Scores per capability", f'<img src="data:image/png;base64,{scores_plot(leaderboard)}">'),
        ("Cost vs quality", f'<img src="data:image/png;base64,{cost_quality_plot(leaderboard)}">'),
    ]
    if verify:
        verdict = "PASSED" if verify["passed"] else "FAILED"
        rows = [{"capability": c, "teacher": verify["teacher_scores"][c], "student": verify["student_scores"].get(c),
                 "retention": r} for c, r in verify["retention"].items()]
        sections.append((f"Teacher-free verification: {verdict} (gate {verify['retain_fraction']})",
                         _table(rows, ["capability", "teacher", "student", "retention"])
                         + f'<img src="data:image/png;base64,{retention_plot(verify["retention"], verify["retain_fraction"])}">'))
    sections += list(extra_sections)
    sections.append(("Stages", _table(stages, list(stages[0]) if stages else [])))
    body = "".join(f"<h2>{html.escape(h)}</h2>{content}" for h, content in sections)
    style = ("body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}"
             "th{background:#f3f3f3}img{max-width:100%}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"

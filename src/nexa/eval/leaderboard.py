"""Leaderboards: per-item scores aggregated per (model, role, capability, metric, judge) into Parquet + reports.

Every row names the judge that produced it (``judge_model_id``) and the hash of that judge's exact
prompt or rule (``judge_prompt_hash``), so two numbers are only ever compared when they were measured
the same way.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Literal, get_args

import pyarrow as pa
import pyarrow.parquet as pq

LEADERBOARD_SCHEMA_VERSION = 1
Role = Literal["teacher", "student", "baseline"]  # a model's role on the leaderboard
ROLES = get_args(Role)
LEADERBOARD_COLUMNS = ["model", "role", "capability", "metric", "score", "n", "latency_ms", "tokens_per_s",
                       "cost_usd", "judge_model_id", "judge_prompt_hash", "dataset"]
_GROUP = ("model", "role", "capability", "metric", "judge_model_id", "judge_prompt_hash", "dataset")


def aggregate(scored: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean score per group; latency is the mean per prompt, tokens/s over the group's generation time.

    ``scored`` items carry the group fields plus ``score``, ``latency_ms``, ``new_tokens`` and ``cost_usd``.
    """
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for item in scored:
        groups[tuple(item[k] for k in _GROUP)].append(item)
    return [_row(dict(zip(_GROUP, key)), items) for key, items in sorted(groups.items())]


def _row(head: dict, items: list[dict]) -> dict[str, Any]:
    seconds = sum(i["latency_ms"] for i in items) / 1000
    tokens = sum(i["new_tokens"] for i in items)
    return {
        **head, "score": sum(i["score"] for i in items) / len(items), "n": len(items),
        "latency_ms": round(seconds * 1000 / len(items), 3), "tokens_per_s": round(tokens / max(seconds, 1e-9), 1),
        "cost_usd": sum(i["cost_usd"] for i in items),
    }


def nested_scores(rows: list[dict], metric: str | None = "exact_match") -> dict[str, dict[str, float]]:
    """``{model: {capability: score}}`` for one metric (the shape pipeline summaries use)."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for r in rows:
        if metric is None or r["metric"] == metric:
            out[r["model"]][r["capability"]] = r["score"]
    return dict(out)


def write_leaderboard(folder: Path, rows: list[dict], metric: str = "exact_match",
                      abstention: dict | None = None) -> dict[str, Path]:
    """leaderboard.parquet plus the same numbers as a JSON report and a Markdown table; the report gains an
    ``abstention`` block when a gated bundle was evaluated (``nexa.eval.abstention.abstention_report``)."""
    for row in rows:
        if row["role"] not in ROLES:
            raise ValueError(f"leaderboard row for model {row['model']!r}: role must be one of {ROLES}, got {row['role']!r}")
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"leaderboard": folder / "leaderboard.parquet", "report_json": folder / "eval_report.json",
             "report_md": folder / "eval_report.md"}
    pq.write_table(pa.Table.from_pylist(rows, schema=schema()), paths["leaderboard"])
    judges = sorted({(r["metric"], r["judge_model_id"], r["judge_prompt_hash"]) for r in rows})
    report = {"schema_version": LEADERBOARD_SCHEMA_VERSION, "metric": metric, "scores": nested_scores(rows, metric),
              "metrics": {m: nested_scores(rows, m) for m in sorted({r["metric"] for r in rows})},
              "judges": [{"metric": m, "judge_model_id": j, "judge_prompt_hash": h} for m, j, h in judges], "rows": rows}
    main_judges = [(j, h) for m, j, h in judges if m == metric]
    if abstention:
        report["abstention"] = abstention
    if len(main_judges) == 1:  # the headline metric was measured one way: name it at the top
        report["judge_model_id"], report["judge_prompt_hash"] = main_judges[0]
    paths["report_json"].write_text(json.dumps(report, indent=2, sort_keys=True))
    paths["report_md"].write_text(markdown(rows))
    return paths


def markdown(rows: list[dict]) -> str:
    lines = ["| model | role | capability | metric | score | n | latency ms | cost $ | judge |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['role']} | {r['capability']} | {r['metric']} | {r['score']:.3f} | {r['n']} | "
              f"{r['latency_ms']:.2f} | {r['cost_usd']:.6f} | {r['judge_model_id']} ({r['judge_prompt_hash'][:12]}) |" for r in rows]
    return "# Eval report\n\n" + "\n".join(lines) + "\n"


def schema() -> pa.Schema:
    types = {"score": pa.float64(), "n": pa.int64(), "latency_ms": pa.float64(), "tokens_per_s": pa.float64(),
             "cost_usd": pa.float64()}
    return pa.schema([(c, types.get(c, pa.string())) for c in LEADERBOARD_COLUMNS])

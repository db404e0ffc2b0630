"""Pipeline stages of the eval layer: every model on every capability's eval split, into a leaderboard."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from nexa.eval.exact import JUDGE_ID, JUDGE_PROMPT_HASH, exact_match
from nexa.eval.generate import greedy_generate, load_hf_model
from nexa.ledger.console import console, table
from nexa.ledger.datasets import read_dataset_rows

LEADERBOARD_COLUMNS = ["model", "role", "capability", "metric", "score", "n", "latency_ms", "tokens_per_s",
                       "cost_usd", "judge_model_id", "judge_prompt_hash", "dataset"]


def exact_eval(ctx, models: dict[str, str], data: str = "data", max_new_tokens: int = 8,
               usd_per_hour: float = 0.0) -> dict:
    """Score each model (stage name → role) by exact match per capability on the held-out eval split."""
    listing = json.loads((ctx.input(data) / "datasets.json").read_text())
    rows = []
    for stage_name, role in models.items():
        model, tok = load_hf_model(ctx.input(stage_name) / "model")
        for capability in sorted(listing["capabilities"]):
            ref = listing["capabilities"][capability]["ref"]
            items = [r for r in read_dataset_rows(ctx.lab, ref) if r["split"] == "eval"]
            gens = greedy_generate(model, tok, [r["prompt"] for r in items], max_new_tokens=max_new_tokens)
            rows.append(_row(stage_name, role, capability, ref, items, gens, usd_per_hour))
    write_leaderboard(ctx.out, rows)
    summary = {f"{r['model']}/{r['capability']}": r["score"] for r in rows}
    ctx.run.update(eval_status="done", eval_report=str(ctx.out / "eval_report.json"), eval_summary=summary,
                   judge_model_id=JUDGE_ID, judge_prompt_hash=JUDGE_PROMPT_HASH)
    console.print(table("leaderboard (exact match)", ["model", "role", "capability", "score", "latency ms"],
                        [(r["model"], r["role"], r["capability"], r["score"], r["latency_ms"]) for r in rows]))
    return {"scores": _nested(rows)}


def _row(model, role, capability, ref, items, gens, usd_per_hour) -> dict:
    scores = [exact_match(g.output, r["answer"]) for g, r in zip(gens, items)]
    seconds = sum(g.latency_ms for g in gens) / 1000
    tokens = sum(g.new_tokens for g in gens)
    return {
        "model": model, "role": role, "capability": capability, "metric": "exact_match",
        "score": sum(scores) / len(scores), "n": len(scores),
        "latency_ms": round(seconds * 1000 / len(gens), 3), "tokens_per_s": round(tokens / max(seconds, 1e-9), 1),
        "cost_usd": usd_per_hour * seconds / 3600, "judge_model_id": JUDGE_ID, "judge_prompt_hash": JUDGE_PROMPT_HASH,
        "dataset": ref,
    }


def _nested(rows: list[dict]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for r in rows:
        out[r["model"]][r["capability"]] = r["score"]
    return dict(out)


def write_leaderboard(folder: Path, rows: list[dict]) -> None:
    """leaderboard.parquet plus the same numbers as a JSON report and a Markdown table."""
    pq.write_table(pa.Table.from_pylist(rows, schema=_schema()), folder / "leaderboard.parquet")
    report = {"schema_version": 1, "metric": "exact_match", "judge_model_id": JUDGE_ID,
              "judge_prompt_hash": JUDGE_PROMPT_HASH, "scores": _nested(rows), "rows": rows}
    (folder / "eval_report.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    lines = ["| model | role | capability | exact match | latency ms |", "|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['role']} | {r['capability']} | {r['score']:.3f} | {r['latency_ms']:.2f} |" for r in rows]
    (folder / "eval_report.md").write_text("# Eval report\n\n" + "\n".join(lines) + "\n")


def _schema() -> pa.Schema:
    types = {"score": pa.float64(), "n": pa.int64(), "latency_ms": pa.float64(), "tokens_per_s": pa.float64(),
             "cost_usd": pa.float64()}
    return pa.schema([(c, types.get(c, pa.string())) for c in LEADERBOARD_COLUMNS])

"""Pipeline stages of the eval layer: every model on every capability's eval split, into a leaderboard."""

from __future__ import annotations

from nexa.eval.evaluate import ModelSpec, generate_items, judge_items, write_jsonl
from nexa.eval.exact import JUDGE_ID, JUDGE_PROMPT_HASH
from nexa.eval.leaderboard import aggregate, nested_scores, write_leaderboard
from nexa.eval.tasks import Task
from nexa.ledger.console import console, table
from nexa.ledger.datasets import read_dataset_rows, read_listing
from nexa.ledger.stage import StageContext


def exact_eval(ctx: StageContext, models: dict[str, str], data: str = "data", max_new_tokens: int = 8,
               usd_per_hour: float = 0.0) -> dict:
    """Score each model (stage name → role) by exact match per capability on the held-out eval split.

    The same generate and judge steps as ``nexa eval run``: generations go through the durable generation
    cache, so a model already scored on these prompts (the same checkpoint in another pipeline, or a
    rerun) is not generated again.
    """
    listing = read_listing(ctx.input(data) / "datasets.json")
    tasks = [_eval_split(ctx, capability, listing["capabilities"][capability]["ref"]) for capability in sorted(listing["capabilities"])]
    specs = [ModelSpec(stage_name, role, ctx.input(stage_name) / "model") for stage_name, role in models.items()]
    items, counts = generate_items(ctx.lab, specs, tasks, max_new_tokens, usd_per_hour)
    scored = judge_items(items, ["exact"])
    rows = aggregate(scored)
    write_leaderboard(ctx.out, rows)
    write_jsonl(ctx.out / "generations.jsonl", scored)  # every (model, prompt, output, score): feedback and review read it
    ctx.run.update(eval_status="done", eval_report=str(ctx.out / "eval_report.json"),
                   eval_summary={f"{r['model']}/{r['capability']}": r["score"] for r in rows},
                   judge_model_id=JUDGE_ID, judge_prompt_hash=JUDGE_PROMPT_HASH,
                   metrics={"generation_cache_hits": float(counts["cached"]), "generations_new": float(counts["generated"])})
    console.print(table("leaderboard (exact match)", ["model", "role", "capability", "score", "latency ms"],
                        [(r["model"], r["role"], r["capability"], r["score"], r["latency_ms"]) for r in rows]))
    return {"scores": nested_scores(rows)}


def _eval_split(ctx: StageContext, capability: str, ref: str) -> Task:
    return Task(capability, ref, [r for r in read_dataset_rows(ctx.lab, ref) if r["split"] == "eval"])

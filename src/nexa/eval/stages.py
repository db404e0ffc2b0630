"""Pipeline stages of the eval layer: every model on every capability's eval split, into a leaderboard."""

from __future__ import annotations

import json

from nexa.eval.cache import GenerationCache, cached_generate
from nexa.eval.exact import JUDGE_ID, JUDGE_PROMPT_HASH, exact_match
from nexa.eval.generate import Generator, model_hash
from nexa.eval.leaderboard import aggregate, nested_scores, write_leaderboard
from nexa.ledger.console import console, table
from nexa.ledger.datasets import read_dataset_rows


def exact_eval(ctx, models: dict[str, str], data: str = "data", max_new_tokens: int = 8,
               usd_per_hour: float = 0.0) -> dict:
    """Score each model (stage name → role) by exact match per capability on the held-out eval split.

    Generations go through the durable generation cache, so a model already scored on these prompts
    (the same checkpoint in another pipeline, or a rerun) is not generated again.
    """
    listing = json.loads((ctx.input(data) / "datasets.json").read_text())
    scored, caches = [], []
    for stage_name, role in models.items():
        path = ctx.input(stage_name) / "model"
        generator, cache = Generator(path), GenerationCache(ctx.lab.durable(), model_hash(path), _params(max_new_tokens))
        caches.append(cache)
        for capability in sorted(listing["capabilities"]):
            ref = listing["capabilities"][capability]["ref"]
            items = [r for r in read_dataset_rows(ctx.lab, ref) if r["split"] == "eval"]
            gens = cached_generate(generator, cache, [r["prompt"] for r in items], max_new_tokens)
            scored += [_scored(stage_name, role, capability, ref, item, gen, usd_per_hour) for item, gen in zip(items, gens)]
    rows = aggregate(scored)
    write_leaderboard(ctx.out, rows)
    _write_samples(ctx.out / "generations.jsonl", scored)
    ctx.run.update(eval_status="done", eval_report=str(ctx.out / "eval_report.json"),
                   eval_summary={f"{r['model']}/{r['capability']}": r["score"] for r in rows},
                   judge_model_id=JUDGE_ID, judge_prompt_hash=JUDGE_PROMPT_HASH,
                   metrics={"generation_cache_hits": float(sum(c.hits for c in caches)),
                            "generations_new": float(sum(c.misses for c in caches))})
    console.print(table("leaderboard (exact match)", ["model", "role", "capability", "score", "latency ms"],
                        [(r["model"], r["role"], r["capability"], r["score"], r["latency_ms"]) for r in rows]))
    return {"scores": nested_scores(rows)}


def _params(max_new_tokens: int) -> dict:
    return {"decoding": "greedy", "max_new_tokens": max_new_tokens}


def _scored(model, role, capability, ref, item, gen, usd_per_hour) -> dict:
    return {"model": model, "role": role, "capability": capability, "metric": "exact_match", "dataset": ref,
            "judge_model_id": JUDGE_ID, "judge_prompt_hash": JUDGE_PROMPT_HASH, "prompt": item["prompt"],
            "reference": item["answer"], "output": gen.output, "score": exact_match(gen.output, item["answer"]),
            "latency_ms": gen.latency_ms, "new_tokens": gen.new_tokens,
            "cost_usd": usd_per_hour * gen.latency_ms / 3_600_000}


def _write_samples(path, scored: list[dict]) -> None:
    """Every (model, prompt, output, score): what the feedback layer and the review queue read."""
    with open(path, "w", encoding="utf-8") as handle:
        for item in scored:
            handle.write(json.dumps(item, sort_keys=True) + "\n")

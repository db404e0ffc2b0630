"""Pipeline stages of the eval layer: every model on every capability's eval split, into a leaderboard."""

from __future__ import annotations

import shutil
from pathlib import Path

from nexa.eval.evaluate import ModelSpec, generate_items, judge_items, write_jsonl
from nexa.eval.exact import JUDGE_ID, JUDGE_PROMPT_HASH
from nexa.eval.leaderboard import aggregate, nested_scores, write_leaderboard
from nexa.eval.tasks import Task
from nexa.ledger import ArtifactRef, Lab
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
    console.print(leaderboard_table(rows))
    return {"scores": nested_scores(rows)}


def _eval_split(ctx: StageContext, capability: str, ref: str) -> Task:
    return Task(capability, ref, [r for r in read_dataset_rows(ctx.lab, ref) if r["split"] == "eval"])


def leaderboard_table(rows: list[dict]):
    """The leaderboard as ``nexa eval`` and the eval stage print it."""
    return table("leaderboard", ["model", "role", "capability", "metric", "score", "n", "latency ms", "judge"],
                 [(r["model"], r["role"], r["capability"], r["metric"], r["score"], r["n"], r["latency_ms"], r["judge_model_id"])
                  for r in rows])


# -- the steps of `nexa eval generate|judge|analyze|run`: each run's files live in durable eval/<run_id>/ ------------
def step_folder(lab: Lab, run_id: str) -> Path:
    """The scratch folder a step writes before :func:`publish_step` moves it to durable storage."""
    folder = lab.scratch / "eval" / run_id
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def publish_step(lab: Lab, run, work: Path, kind: str) -> list[dict]:
    """Copy the run's files to durable storage (hash-listed) and record them as the run's output."""
    store = lab.durable()
    ref = store.put_dir(work, f"eval/{run.run_id}")
    run.add_output(ArtifactRef(kind=kind, ref=f"eval:{run.run_id}", path=ref.path, sha256=ref.sha256))
    listing = store.dir_listing(f"eval/{run.run_id}")
    shutil.rmtree(work)
    return [{"path": store.location(f"eval/{run.run_id}/{rel}"), "sha256": digest} for rel, digest in sorted(listing.items())]


def read_step(lab: Lab, run_id: str, filename: str) -> list[dict]:
    """A file an earlier eval run wrote, fetched from durable storage with every hash checked."""
    from nexa.eval.evaluate import read_jsonl

    store = lab.durable()
    if not store.exists(f"eval/{run_id}/_files.json"):
        raise FileNotFoundError(f"run {run_id} has no eval outputs in {store.location('eval/' + run_id)}; "
                                "pass the run id printed by `nexa eval generate`/`judge`")
    if filename not in store.dir_listing(f"eval/{run_id}"):
        raise FileNotFoundError(f"run {run_id} has no {filename}; it is not the right kind of eval run")
    return read_jsonl(store.fetch_dir(f"eval/{run_id}", lab.scratch / "eval-inputs" / run_id) / filename)


def generate_step(lab: Lab, run, work: Path, models: list[ModelSpec], tasks: str, n: int, max_new_tokens: int,
                  usd_per_hour: float | None, budget_usd: float | None = None) -> tuple[list[dict], dict]:
    """Every model on every task's eval prompts through the generation cache, written to ``generations.jsonl``.
    ``usd_per_hour`` defaults to the lab's price for the hardware the run is on (local = free)."""
    from nexa.eval.tasks import resolve_tasks
    from nexa.infra.cost import PriceTable, UnknownPriceError

    resolved = resolve_tasks(lab, tasks.split(","), n=n, created_by=run.run_id)
    if usd_per_hour is None:
        try:
            usd_per_hour = PriceTable.from_lab(lab).hourly(run.manifest.provider, run.manifest.gpu_type)
        except UnknownPriceError as exc:
            raise UnknownPriceError(f"{exc} (or pass --usd-per-hour)") from exc
    items, counts = generate_items(lab, models, resolved, max_new_tokens, usd_per_hour, run, budget_usd)
    write_jsonl(work / "generations.jsonl", items)
    run.update(student_model=",".join(m.name for m in models), dataset_id=",".join(t.ref for t in resolved),
               metrics={"generations_cached": float(counts["cached"]), "generations_new": float(counts["generated"])})
    console.print(f"{len(items)} generations: {counts['generated']} new, {counts['cached']} from the cache")
    return items, counts


def analyze_step(lab: Lab, run, work: Path, scored: list[dict]) -> dict:
    """The leaderboard and eval report of scored generations, recorded in the run manifest."""
    rows = aggregate(scored)
    metric = "exact_match" if any(r["metric"] == "exact_match" for r in rows) else rows[0]["metric"]
    paths = write_leaderboard(work, rows, metric=metric)
    report = lab.durable().location(f"eval/{run.run_id}/{paths['report_json'].name}")  # where publish_step puts it
    run.update(eval_status="done", eval_report=report,
               eval_summary={f"{r['model']}/{r['capability']}/{r['metric']}": r["score"] for r in rows})
    console.print(leaderboard_table(rows))
    return {"scores": nested_scores(rows, metric), "rows": len(rows)}

"""A small lab made with the ledger's own APIs (no pipeline run) for the dashboard and report tests.

The lab: a dataset version, a pipeline run with three stage runs (eval with a leaderboard and generations,
verify with retention intervals, feedback with before/after), and a later eval run, so scores over time
have two points.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from nexa.eval.leaderboard import write_leaderboard
from nexa.ledger import ArtifactRef, Lab
from nexa.ledger.datasets import write_dataset_version
from nexa.ledger.manifests import CostBreakdown, StageRecord
from nexa.ledger.runs import start_run

CAPABILITIES = ("reasoning", "science")
MODELS = {"teacher": "teacher", "student": "student_niwt", "baseline": "baseline"}
START = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


def _board_rows(scores: dict[tuple[str, str], float], cost: float) -> list[dict]:
    return [{"model": MODELS[role], "role": role, "capability": cap, "metric": "exact_match", "score": score, "n": 20,
             "latency_ms": 3.0, "tokens_per_s": 100.0, "cost_usd": cost, "judge_model_id": "exact-match",
             "judge_prompt_hash": "0" * 64, "dataset": "ui-reasoning@v1"} for (role, cap), score in scores.items()]


def _stage_output(lab: Lab, name: str, key: str) -> tuple[ArtifactRef, object]:
    folder = lab.durable().local_path(f"stages/{name}/{key[:24]}")
    folder.mkdir(parents=True)
    return ArtifactRef(kind="stage_output", ref=f"{name}:{key[:24]}", path=str(folder), sha256=key), folder


def _stage_run(lab: Lab, name: str, parent: str, when: datetime, key: str, dataset: str):
    run = start_run(lab, name, config={"stage": name}, parent_run_id=parent, seed=42)
    run.update(started_at=when)
    run.add_input(ArtifactRef(kind="dataset", ref=dataset, path="registry", sha256="0" * 64))
    ref, folder = _stage_output(lab, name, key)
    run.add_output(ref)
    return run, ref, folder


def build_lab(root) -> dict:
    """The lab described in the module docstring; returns its ids and paths."""
    lab = Lab.init(root)
    with start_run(lab, "data", seed=42) as data_run:
        rows = [{"prompt": f"max({i},{20 - i})=", "answer": str(max(i, 20 - i)), "capability": "reasoning",
                 "domain": "math", "split": "train"} for i in range(20)]
        dataset = write_dataset_version(lab, "ui-reasoning", rows, row_schema="qa", created_by=data_run.run_id).ref
    pipe = start_run(lab, "pipeline", config={"name": "ui-test"}, seed=42)
    pipe.update(started_at=START)
    keys = {n: f"{i:02d}" * 32 for i, n in enumerate(("eval", "verify", "feedback"))}
    stages = []

    eval_run, eval_ref, eval_dir = _stage_run(lab, "eval", pipe.run_id, START, keys["eval"], dataset)
    scores = {(role, cap): s for (role, cap), s in zip([(r, c) for r in MODELS for c in CAPABILITIES],
                                                       [1.0, 0.95, 0.97, 0.93, 0.5, 0.4])}
    write_leaderboard(eval_dir, _board_rows(scores, cost=0.002))
    generations = [{"model": "student_niwt", "prompt": r["prompt"], "output": r["answer"], "reference": r["answer"],
                    "capability": "reasoning", "domain": "math"} for r in rows[:8]]
    (eval_dir / "generations.jsonl").write_text("".join(json.dumps(g) + "\n" for g in generations))
    eval_run.finish(CostBreakdown(compute_usd=0.01, total_usd=0.01))
    stages.append(StageRecord(name="eval", status="ran", seconds=12.5, key=keys["eval"], outputs_sha256=keys["eval"]))

    verify_run, _, verify_dir = _stage_run(lab, "verify", pipe.run_id, START, keys["verify"], dataset)
    (verify_dir / "bundle").mkdir()
    (verify_dir / "bundle" / "verify_report.json").write_text(json.dumps({
        "schema_version": 1, "retain_fraction": 0.97, "passed": True, "teacher_scores": {"reasoning": 1.0, "science": 0.95},
        "student_scores": {"reasoning": 0.99, "science": 0.93}, "retention": {"reasoning": 0.99, "science": 0.979},
        "retention_ci": {"reasoning": [0.97, 1.0], "science": [0.95, 1.0]}, "failing": [], "checks": {"hash_mismatches": []}}))
    verify_run.finish(CostBreakdown(compute_usd=0.003, total_usd=0.003))
    stages.append(StageRecord(name="verify", status="ran", seconds=4.0, key=keys["verify"], outputs_sha256=keys["verify"]))

    fb_run, _, fb_dir = _stage_run(lab, "feedback", pipe.run_id, START, keys["feedback"], dataset)
    (fb_dir / "feedback.json").write_text(json.dumps({"chemistry": {"before": 0.4, "after": 0.85},
                                                      "reasoning": {"before": 0.9, "after": 0.92}}))
    fb_run.finish()
    stages.append(StageRecord(name="feedback", status="cached", seconds=0.2, key=keys["feedback"], outputs_sha256=keys["feedback"]))
    pipe.update(stages=stages)
    for ref in [r for c in (eval_run, verify_run, fb_run) for r in c.manifest.outputs]:
        pipe.add_output(ref)
    pipe.finish(CostBreakdown(total_usd=0.013))

    later = start_run(lab, "eval", config={"round": 2}, seed=42)
    later.update(started_at=START + timedelta(days=1))
    later.add_input(ArtifactRef(kind="dataset", ref=dataset, path="registry", sha256="0" * 64))
    later_dir = lab.durable().local_path(f"eval/{later.run_id}")
    write_leaderboard(later_dir, _board_rows({("student", "reasoning"): 1.0, ("student", "science"): 0.96}, cost=0.004))
    later.add_output(ArtifactRef(kind="eval_report", ref=f"eval:{later.run_id}", path=str(later_dir), sha256="0" * 64))
    later.finish()
    return {"lab": lab, "dataset": dataset, "pipeline": pipe.run_id, "eval": eval_run.run_id, "later": later.run_id,
            "parquets": [eval_dir / "leaderboard.parquet", later_dir / "leaderboard.parquet"], "eval_dir": eval_dir}

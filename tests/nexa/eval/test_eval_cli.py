"""`nexa eval run/generate/judge/analyze` on a tiny checkpoint: cached reruns, leaderboard contract, errors."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
from typer.testing import CliRunner

from nexa.cli import app
from nexa.ledger.runs import load_run

REQUIRED = {"model", "role", "capability", "metric", "score", "latency_ms", "cost_usd", "judge_model_id", "judge_prompt_hash"}


def _flat(text: str) -> str:
    """Rich wraps long messages; compare on single spaces."""
    return " ".join(text.split())


def _run(*args: str) -> dict:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_rerun_makes_no_new_generations_and_the_same_leaderboard(lab, tiny_model):
    args = ("eval", "run", "--model", str(tiny_model), "--tasks", "reasoning,science", "--n", "12",
            "--max-new-tokens", "4", "--judges", "exact,numeric,rubric", "--lab", str(lab.root))
    first, second = _run(*args), _run(*args)
    assert (first["generated"], first["cached"]) == (24, 0)
    assert (second["generated"], second["cached"]) == (0, 24)
    one, two = (pq.read_table(r["leaderboard"]).to_pylist() for r in (first, second))
    assert one == two and len(one) == 2 * (2 + 6)  # 2 tasks × (exact, numeric, 5 rubric metrics + red_flag_count)
    assert REQUIRED <= set(one[0]) and {r["role"] for r in one} == {"student"} and {r["model"] for r in one} == {"student_x"}
    manifest = load_run(lab, second["run_id"])
    assert manifest.eval_status == "done" and manifest.eval_summary and manifest.metrics["generations_new"] == 0
    assert manifest.eval_report.endswith("eval_report.json")


def test_steps_apart_give_the_same_scores_as_run(lab, tiny_model):
    gen = _run("eval", "generate", "--model", str(tiny_model), "--role", "baseline", "--tasks", "chemistry",
               "--n", "8", "--max-new-tokens", "4", "--lab", str(lab.root))
    judged = _run("eval", "judge", "--generations", gen["run_id"], "--judges", "exact", "--lab", str(lab.root))
    analyzed = _run("eval", "analyze", "--scores", judged["run_id"], "--lab", str(lab.root))
    together = _run("eval", "run", "--model", str(tiny_model), "--role", "baseline", "--tasks", "chemistry",
                    "--n", "8", "--max-new-tokens", "4", "--lab", str(lab.root))
    assert together["generated"] == 0  # the separate generate step filled the cache
    assert analyzed["scores"] == together["scores"]
    manifest = load_run(lab, judged["run_id"])
    assert manifest.judge_model_id == "exact_match@1" and len(manifest.judge_prompt_hash) == 64


def test_registered_dataset_task_uses_its_eval_split_and_version(lab, tiny_model):
    from nexa.ledger.datasets import write_dataset_version

    rows = [{"prompt": f"{i} km in m?", "answer": str(i * 1000), "capability": "science", "domain": "u", "split": s}
            for i, s in zip(range(1, 11), ["train"] * 6 + ["eval"] * 4)]
    write_dataset_version(lab, "units", rows, row_schema="qa")
    out = _run("eval", "run", "--model", str(tiny_model), "--tasks", "units", "--max-new-tokens", "3", "--lab", str(lab.root))
    rows = pq.read_table(out["leaderboard"]).to_pylist()
    assert [(r["dataset"], r["n"]) for r in rows] == [("units@v1", 4)]


def test_user_errors_are_messages_not_tracebacks(lab, tiny_model, tmp_path):
    runner = CliRunner()
    missing = runner.invoke(app, ["eval", "run", "--model", str(tmp_path), "--lab", str(lab.root)])
    assert missing.exit_code == 2 and "is not a model" in _flat(missing.output)
    unknown = runner.invoke(app, ["eval", "run", "--model", str(tiny_model), "--tasks", "poetry", "--lab", str(lab.root)])
    assert unknown.exit_code == 2 and "poetry" in _flat(unknown.output)
    no_judge = runner.invoke(app, ["eval", "run", "--model", str(tiny_model), "--judges", "llm", "--lab", str(lab.root)])
    assert no_judge.exit_code == 2 and "--judge-url" in _flat(no_judge.output)


def test_run_id_evaluates_the_models_a_run_made_with_roles_from_stage_names(lab, tiny_model):
    from nexa.ledger import ArtifactRef
    from nexa.ledger.runs import start_run

    with start_run(lab, "pipeline") as made:
        made.add_output(ArtifactRef(kind="stage_output", ref="baseline:abc", path=str(tiny_model), sha256="0" * 64))
        made.add_output(ArtifactRef(kind="stage_output", ref="data:def", path=str(lab.root), sha256="0" * 64))
    out = _run("eval", "run", "--run-id", made.run_id, "--tasks", "reasoning", "--n", "4", "--max-new-tokens", "3",
               "--usd-per-hour", "3600", "--lab", str(lab.root))
    (row,) = pq.read_table(out["leaderboard"]).to_pylist()
    assert (row["model"], row["role"], row["n"]) == ("baseline", "baseline", 4)
    assert row["cost_usd"] > 0 and abs(row["cost_usd"] - row["latency_ms"] * 4 / 1000) < 1e-5  # $1/s × seconds (latency is rounded)

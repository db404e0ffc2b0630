"""``nexa eval``: generate on eval tasks (cached), judge the outputs, analyze them into a leaderboard."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nexa.eval import evaluate as ev
from nexa.eval import stages
from nexa.eval.leaderboard import Role
from nexa.ledger import Lab
from nexa.ledger.console import FOUND_LAB, JSON, emit_result, table, with_options

app = typer.Typer(help="Evaluate models: generate on tasks, judge outputs, build leaderboards.", no_args_is_help=True)

BUDGET = typer.Option(None, "--budget-usd", min=0.0, help="Most USD new API-teacher (URL#MODEL) or judge calls may spend.")
MODELS = {  # what `generate` and `run` evaluate, and how
    "model": (list[str], typer.Option([], "--model", help="Checkpoint folder, bundle folder, API teacher URL#MODEL or run id (repeatable).")),
    "run_id": (Optional[str], typer.Option(None, "--run-id", help="Evaluate every model this run produced.")),
    "role": (Optional[Role], typer.Option(None, help="Role on the leaderboard (default: from the stage name).")),
    "tasks": (str, typer.Option("reasoning,science,chemistry", "--tasks", help="Comma-separated built-in capabilities or dataset ID[@vN].")),
    "n": (int, typer.Option(200, help="Prompts per built-in task.")),
    "max_new_tokens": (int, typer.Option(8, min=1)),
    "usd_per_hour": (Optional[float], typer.Option(None, help="Hardware $/h for cost per prompt (default: the lab's price table).")),
}
JUDGES = {  # how `judge` and `run` score
    "judges": (str, typer.Option("exact", "--judges", help=f"Comma-separated judges from {list(ev.JUDGES)}.")),
    "judge_url": (Optional[str], typer.Option(None, help="OpenAI-compatible base URL of the LLM judge.")),
    "judge_model": (Optional[str], typer.Option(None, help="Model name the LLM judge serves.")),
    "rubric": (Optional[Path], typer.Option(None, help="Rubric file (rubrics/*.yaml) for the LLM judge.")),
    "against": (Optional[str], typer.Option(None, help="For --judges pairwise: the model every other model is compared with.")),
}
RECORDED = ("model", "run_id", "tasks", "n", "max_new_tokens")  # what a run's config records of MODELS


@app.command()
@with_options(MODELS)
def generate(budget_usd: Optional[float] = BUDGET, lab: Lab = FOUND_LAB, json_out: bool = JSON, **models) -> None:
    """Generate on each task's eval prompts; outputs are cached by (model hash, prompt hash, params)."""
    with stages.step_run(lab, "eval_generate", {k: models[k] for k in RECORDED}, "generations") as step:
        items, counts = stages.generate_step(lab, step.run, step.work, **models, budget_usd=budget_usd)
    emit_result({**step.result, "generations": len(items), **counts}, json_out)


@app.command()
@with_options(JUDGES)
def judge(generations: str = typer.Option(..., "--generations", help="Run id of a `nexa eval generate` run."),
          budget_usd: Optional[float] = BUDGET, lab: Lab = FOUND_LAB, json_out: bool = JSON, **how) -> None:
    """Score every generation with each judge; each score records judge_model_id and judge_prompt_hash."""
    items = stages.read_step(lab, generations, "generations.jsonl")
    names, llm = stages.judges_of(lab, how, budget_usd)
    with stages.step_run(lab, "eval_judge", {"generations": generations, "judges": names, "judge_model": how["judge_model"],
                                             "rubric": str(how["rubric"]) if how["rubric"] else None}, "scores") as step:
        scored = stages.judge_step(step.run, step.work, items, names, llm, how["against"])
    emit_result({**step.result, "scores": len(scored)}, json_out)


@app.command()
def analyze(scores: str = typer.Option(..., "--scores", help="Run id of a `nexa eval judge` run."),
            lab: Lab = FOUND_LAB, json_out: bool = JSON) -> None:
    """leaderboard.parquet, eval_report.json/.md, and eval_status/report/summary in the run manifest."""
    from nexa.ledger.lean_arrow import arrow_without_pandas

    arrow_without_pandas()  # this process converts no pandas objects: spare it pandas' import
    scored = stages.read_step(lab, scores, "scores.jsonl")
    with stages.step_run(lab, "eval_analyze", {"scores": scores}, "eval_report") as step:
        summary = stages.analyze_step(lab, step.run, step.work, scored)
    emit_result({**step.result, **summary}, json_out)


@app.command("run")
@with_options(MODELS, JUDGES)
def run_all(budget_usd: Optional[float] = BUDGET, lab: Lab = FOUND_LAB, json_out: bool = JSON, **options) -> None:
    """Generate, judge and analyze in one run; a rerun with nothing changed generates nothing."""
    models, how = ({k: options[k] for k in keys} for keys in (MODELS, JUDGES))
    names, llm = stages.judges_of(lab, how, budget_usd)
    config = {**{k: models[k] for k in RECORDED}, "judges": names, "judge_model": how["judge_model"]}
    with stages.step_run(lab, "eval", config, "eval_report") as step:
        items, counts = stages.generate_step(lab, step.run, step.work, **models, budget_usd=budget_usd)
        scored = stages.judge_step(step.run, step.work, items, names, llm, how["against"])
        summary = stages.analyze_step(lab, step.run, step.work, scored)
    emit_result({**step.result, **counts, "leaderboard": stages.leaderboard_of(step.result), **summary}, json_out)


@app.command("lm-eval")
def lm_eval_run(model: str = typer.Option(..., "--model", help="Bundle folder, HF checkpoint folder or OpenAI-compatible URL."),
                tasks: str = typer.Option(..., "--tasks", help="Comma-separated lm-evaluation-harness task names."),
                include_path: Optional[Path] = typer.Option(None, "--include-path", help="Folder of local task YAMLs."),
                limit: Optional[int] = typer.Option(None, "--limit", min=1, help="At most this many documents per task."),
                num_fewshot: Optional[int] = typer.Option(None, "--num-fewshot", min=0, help="Override each task's n-shot."),
                role: Role = typer.Option("student", "--role", help="Role on the leaderboard."),
                lab: Lab = FOUND_LAB, json_out: bool = JSON) -> None:
    """Run lm-evaluation-harness tasks on a bundle (served on a loopback port), a checkpoint or an endpoint;
    the scores land in a leaderboard with each task's version, n-shot and hashes."""
    name, summary, leaderboard = stages.lm_eval_step(lab, model, tasks, include_path, role, limit, num_fewshot)
    emit_result({"model": name, "tasks": summary, "leaderboard": leaderboard}, json_out,
                table("lm-eval", ["task", "metric", "score", "n", "version"],
                      [(t, s["metric"], s["score"], s["n"], s["version"]) for t, s in summary.items()]))

"""``nexa eval``: generate on eval tasks (cached), judge the outputs, analyze them into a leaderboard."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nexa.eval import evaluate as ev
from nexa.eval.stages import analyze_step, generate_step, publish_step, read_step, step_folder
from nexa.ledger import Lab
from nexa.ledger.console import console, emit_result, fail, table
from nexa.ledger.runs import start_run

app = typer.Typer(help="Evaluate models: generate on tasks, judge outputs, build leaderboards.", no_args_is_help=True)

LAB = typer.Option(Path("."), "--lab", help="Lab folder.")
JSON = typer.Option(False, "--json", help="Print one JSON object on stdout.")
TASKS = typer.Option("reasoning,science,chemistry", "--tasks", help="Comma-separated built-in capabilities or dataset ID[@vN].")
BUDGET = typer.Option(None, "--budget-usd", min=0.0, help="Most USD new API-teacher (URL#MODEL) or judge calls may spend.")
JUDGES = typer.Option("exact", "--judges", help=f"Comma-separated judges from {list(ev.JUDGES)}.")


def _llm_judge(judges: list[str], url: Optional[str], model: Optional[str], rubric: Optional[Path], lab: Lab,
               budget_usd: Optional[float] = None):
    if not {"llm", "pairwise"} & set(judges):
        return None
    if not (url and model and rubric):
        fail("--judges llm/pairwise needs --judge-url (OpenAI-compatible, e.g. http://127.0.0.1:8000/v1), --judge-model and --rubric rubrics/NAME.yaml")
    from nexa.eval.llm_judge import LLMJudge, load_rubric
    from nexa.infra.cost import PriceTable, UnknownPriceError

    price = None
    try:
        price = PriceTable.from_lab(lab).model_price(model)
    except UnknownPriceError:
        console.print(f"[yellow]note:[/yellow] judge model {model!r} has no price in nexa.yaml: its calls are "
                      "counted as free (self-hosted); price it to see judge spend in the cost column")
    return LLMJudge(url, model, load_rubric(rubric), lab, price=price, budget_usd=budget_usd)


def _models(lab: Lab, refs: list[str], run_id: Optional[str], role: Optional[str]) -> list[ev.ModelSpec]:
    if not refs and not run_id:
        fail("pass --model PATH (checkpoint folder or bundle; repeatable) or --run-id RUN (evaluate the models that run made)")
    specs = [s for ref in refs for s in ev.resolve_models(lab, ref, role)]
    specs += ev.resolve_models(lab, run_id, role) if run_id else []
    if role and role not in ("teacher", "student", "baseline"):
        fail(f"--role must be teacher, student or baseline, not {role!r}")
    return specs


def _generate(*step_args) -> tuple[list[dict], dict]:
    """The generate step; a teacher that fails mid-eval ends the command as a user-facing error."""
    from nexa.teachers.errors import TeacherError

    try:
        return generate_step(*step_args)
    except TeacherError as exc:
        fail(str(exc))


def _judge(run, work, items, judges, llm, against=None) -> list[dict]:
    from nexa.eval.llm_judge import JudgeError

    if llm is not None:
        llm.run_id = run.run_id  # cached verdicts name the run that paid for them
    try:
        scored = ev.judge_items(items, judges, llm, against=against)
    except (ValueError, JudgeError) as exc:
        fail(str(exc))
    ev.write_jsonl(work / "scores.jsonl", scored)
    ids = sorted({(s["judge_model_id"], s["judge_prompt_hash"]) for s in scored})
    if len(ids) == 1:
        run.update(judge_model_id=ids[0][0], judge_prompt_hash=ids[0][1])
    else:
        run.update(judge_model_id=";".join(i for i, _ in ids), judge_prompt_hash=";".join(h for _, h in ids))
    return scored


@app.command()
def generate(model: list[str] = typer.Option([], "--model", help="Checkpoint folder, bundle folder, API teacher URL#MODEL or run id (repeatable)."),
             run_id: Optional[str] = typer.Option(None, "--run-id", help="Evaluate every model this run produced."),
             role: Optional[str] = typer.Option(None, help="teacher | student | baseline (default: from the stage name)."),
             tasks: str = TASKS, n: int = typer.Option(200, help="Prompts per built-in task."),
             max_new_tokens: int = typer.Option(8, min=1), usd_per_hour: Optional[float] = typer.Option(None, help="Hardware $/h for cost per prompt (default: the lab's price table)."),
             budget_usd: Optional[float] = BUDGET, lab_dir: Path = LAB, json_out: bool = JSON) -> None:
    """Generate on each task's eval prompts; outputs are cached by (model hash, prompt hash, params)."""
    lab = Lab.find(lab_dir)
    with start_run(lab, "eval_generate", config={"model": model, "run_id": run_id, "tasks": tasks, "n": n,
                                                 "max_new_tokens": max_new_tokens}) as run:
        console.print(f"run [bold]{run.run_id}[/bold]")
        work = step_folder(lab, run.run_id)
        items, counts = _generate(lab, run, work, _models(lab, model, run_id, role), tasks, n, max_new_tokens, usd_per_hour,
                                  budget_usd)
        outputs = publish_step(lab, run, work, "generations")
    emit_result({"run_id": run.run_id, "status": "succeeded", "outputs": outputs, "generations": len(items), **counts}, json_out)


@app.command()
def judge(generations: str = typer.Option(..., "--generations", help="Run id of a `nexa eval generate` run."),
          judges: str = JUDGES, judge_url: Optional[str] = typer.Option(None, help="OpenAI-compatible base URL of the LLM judge."),
          judge_model: Optional[str] = typer.Option(None, help="Model name the LLM judge serves."),
          rubric: Optional[Path] = typer.Option(None, help="Rubric file (rubrics/*.yaml) for the LLM judge."),
          against: Optional[str] = typer.Option(None, help="For --judges pairwise: the model every other model is compared with."),
          budget_usd: Optional[float] = BUDGET, lab_dir: Path = LAB, json_out: bool = JSON) -> None:
    """Score every generation with each judge; each score records judge_model_id and judge_prompt_hash."""
    lab = Lab.find(lab_dir)
    names = [j.strip() for j in judges.split(",") if j.strip()]
    items = read_step(lab, generations, "generations.jsonl")
    llm = _llm_judge(names, judge_url, judge_model, rubric, lab, budget_usd)
    with start_run(lab, "eval_judge", config={"generations": generations, "judges": names, "judge_model": judge_model,
                                              "rubric": str(rubric) if rubric else None}) as run:
        console.print(f"run [bold]{run.run_id}[/bold]")
        work = step_folder(lab, run.run_id)
        scored = _judge(run, work, items, names, llm, against)
        outputs = publish_step(lab, run, work, "scores")
    emit_result({"run_id": run.run_id, "status": "succeeded", "outputs": outputs, "scores": len(scored)}, json_out)


@app.command()
def analyze(scores: str = typer.Option(..., "--scores", help="Run id of a `nexa eval judge` run."),
            lab_dir: Path = LAB, json_out: bool = JSON) -> None:
    """leaderboard.parquet, eval_report.json/.md, and eval_status/report/summary in the run manifest."""
    from nexa.ledger.lean_arrow import arrow_without_pandas

    arrow_without_pandas()  # this process converts no pandas objects: spare it pandas' import
    lab = Lab.find(lab_dir)
    scored = read_step(lab, scores, "scores.jsonl")
    with start_run(lab, "eval_analyze", config={"scores": scores}) as run:
        console.print(f"run [bold]{run.run_id}[/bold]")
        work = step_folder(lab, run.run_id)
        summary = analyze_step(lab, run, work, scored)
        outputs = publish_step(lab, run, work, "eval_report")
    emit_result({"run_id": run.run_id, "status": "succeeded", "outputs": outputs, **summary}, json_out)


@app.command("run")
def run_all(model: list[str] = typer.Option([], "--model", help="Checkpoint folder, bundle folder, API teacher URL#MODEL or run id (repeatable)."),
            run_id: Optional[str] = typer.Option(None, "--run-id", help="Evaluate every model this run produced."),
            role: Optional[str] = typer.Option(None, help="teacher | student | baseline (default: from the stage name)."),
            tasks: str = TASKS, n: int = typer.Option(200, help="Prompts per built-in task."),
            max_new_tokens: int = typer.Option(8, min=1),
            usd_per_hour: Optional[float] = typer.Option(None, help="Hardware $/h for cost per prompt (default: the lab's price table)."),
            judges: str = JUDGES, judge_url: Optional[str] = typer.Option(None), judge_model: Optional[str] = typer.Option(None),
            rubric: Optional[Path] = typer.Option(None), against: Optional[str] = typer.Option(None),
            budget_usd: Optional[float] = BUDGET, lab_dir: Path = LAB, json_out: bool = JSON) -> None:
    """Generate, judge and analyze in one run; a rerun with nothing changed generates nothing."""
    lab = Lab.find(lab_dir)
    names = [j.strip() for j in judges.split(",") if j.strip()]
    llm = _llm_judge(names, judge_url, judge_model, rubric, lab, budget_usd)
    with start_run(lab, "eval", config={"model": model, "run_id": run_id, "tasks": tasks, "n": n, "judges": names,
                                        "max_new_tokens": max_new_tokens, "judge_model": judge_model}) as run:
        console.print(f"run [bold]{run.run_id}[/bold]")
        work = step_folder(lab, run.run_id)
        items, counts = _generate(lab, run, work, _models(lab, model, run_id, role), tasks, n, max_new_tokens, usd_per_hour,
                                  budget_usd)
        summary = analyze_step(lab, run, work, _judge(run, work, items, names, llm, against))
        outputs = publish_step(lab, run, work, "eval_report")
    emit_result({"run_id": run.run_id, "status": "succeeded", "outputs": outputs, **counts,
                 "leaderboard": next(o["path"] for o in outputs if o["path"].endswith("leaderboard.parquet")), **summary}, json_out)


@app.command("lm-eval")
def lm_eval_run(model: str = typer.Option(..., "--model", help="Bundle folder, HF checkpoint folder or OpenAI-compatible URL."),
                tasks: str = typer.Option(..., "--tasks", help="Comma-separated lm-evaluation-harness task names."),
                include_path: Optional[Path] = typer.Option(None, "--include-path", help="Folder of local task YAMLs."),
                limit: Optional[int] = typer.Option(None, "--limit", min=1, help="At most this many documents per task."),
                num_fewshot: Optional[int] = typer.Option(None, "--num-fewshot", min=0, help="Override each task's n-shot."),
                role: str = typer.Option("student", "--role", help="teacher | student | baseline on the leaderboard."),
                lab_dir: Path = LAB, json_out: bool = JSON) -> None:
    """Run lm-evaluation-harness tasks on a bundle (served on a loopback port), a checkpoint or an endpoint;
    the scores land in a leaderboard with each task's version, n-shot and hashes."""
    from nexa.eval import harness

    if role not in ("teacher", "student", "baseline"):
        fail(f"--role must be teacher, student or baseline, not {role!r}")
    lab = Lab.find(lab_dir)
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    try:
        with harness.target(model, lab.scratch / "lm-eval" / "tokenizers" / Path(model).name) as target:
            plan = harness.check(target, names, include_path)
            with start_run(lab, "eval_lm_eval", config={"model": model, "tasks": names, "limit": limit,
                                                        "num_fewshot": num_fewshot}) as run:
                console.print(f"run [bold]{run.run_id}[/bold]")
                work = step_folder(lab, run.run_id)
                summary = harness.evaluate(plan, work, role, limit, num_fewshot)
                outputs = publish_step(lab, run, work, "eval_report")
    except harness.HarnessError as exc:
        fail(str(exc))
    leaderboard = next(o["path"] for o in outputs if o["path"].endswith("leaderboard.parquet"))
    if not json_out:
        console.print(table("lm-eval", ["task", "metric", "score", "n", "version"],
                            [(t, s["metric"], s["score"], s["n"], s["version"]) for t, s in summary.items()]))
    emit_result({"model": target.name, "tasks": summary, "leaderboard": leaderboard}, json_out)

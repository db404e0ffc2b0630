"""Pipeline stages of the eval layer: every model on every capability's eval split, into a leaderboard."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

from nexa.eval.abstention import abstention_report
from nexa.eval.evaluate import ModelSpec, generate_items, judge_items, resolve_models, write_jsonl
from nexa.eval.exact import JUDGE_ID, JUDGE_PROMPT_HASH
from nexa.eval.leaderboard import aggregate, nested_scores, write_leaderboard
from nexa.eval.tasks import Task
from nexa.ledger import ArtifactRef, Lab
from nexa.ledger.console import command_run, console, failing_on, table
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
    abstention = abstention_report(scored)
    write_leaderboard(ctx.out, rows, abstention=abstention)
    write_jsonl(ctx.out / "generations.jsonl", scored)  # every (model, prompt, output, score): feedback and review read it
    ctx.run.update(eval_status="done", eval_report=str(ctx.out / "eval_report.json"),
                   eval_summary={f"{r['model']}/{r['capability']}": r["score"] for r in rows},
                   judge_model_id=JUDGE_ID, judge_prompt_hash=JUDGE_PROMPT_HASH,
                   metrics={"generation_cache_hits": float(counts["cached"]), "generations_new": float(counts["generated"])})
    console.print(leaderboard_table(rows))
    return {"scores": nested_scores(rows), **_abstention_summary(abstention)}


def _eval_split(ctx: StageContext, capability: str, ref: str) -> Task:
    return Task(capability, ref, [r for r in read_dataset_rows(ctx.lab, ref) if r["split"] == "eval"])


def leaderboard_table(rows: list[dict]):
    """The leaderboard as ``nexa eval`` and the eval stage print it."""
    return table("leaderboard", ["model", "role", "capability", "metric", "score", "n", "latency ms", "judge"],
                 [(r["model"], r["role"], r["capability"], r["metric"], r["score"], r["n"], r["latency_ms"], r["judge_model_id"])
                  for r in rows])


# -- the steps of `nexa eval generate|judge|analyze|run|lm-eval`: each run's files live in durable eval/<run_id>/ -----
@contextmanager
def step_run(lab: Lab, run_type: str, config: dict, kind: str) -> Iterator[SimpleNamespace]:
    """One run of an eval command: ``.run`` and its scratch folder ``.work``, copied to durable storage (hash-listed) as
    the run's output when the step ends, giving ``.result`` (run id, status, outputs). A teacher or judge that fails
    ends the command as one ``error:`` line (exit 2), like every user-facing mistake."""
    from nexa.eval.llm_judge import JudgeError
    from nexa.teachers.errors import TeacherError

    with command_run(lab, run_type, config=config) as run, failing_on(TeacherError, JudgeError):
        step = SimpleNamespace(run=run, work=lab.scratch / "eval" / run.run_id)
        step.work.mkdir(parents=True, exist_ok=True)
        yield step
        store = lab.durable()
        ref = store.put_dir(step.work, f"eval/{run.run_id}")
        run.add_output(ArtifactRef(kind=kind, ref=f"eval:{run.run_id}", path=ref.path, sha256=ref.sha256))
        shutil.rmtree(step.work)
        step.result = {"run_id": run.run_id, "status": "succeeded", "outputs": [
            {"path": store.location(f"eval/{run.run_id}/{rel}"), "sha256": digest}
            for rel, digest in sorted(store.dir_listing(f"eval/{run.run_id}").items())]}


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


def generate_step(lab: Lab, run, work: Path, model: list[str], run_id: str | None, role: str | None, tasks: str, n: int,
                  max_new_tokens: int, usd_per_hour: float | None, budget_usd: float | None = None) -> tuple[list[dict], dict]:
    """Every model ``model`` and ``run_id`` name on every task's eval prompts through the generation cache, written to
    ``generations.jsonl``. ``usd_per_hour`` defaults to the lab's price for the hardware the run is on (local = free)."""
    from nexa.eval.tasks import resolve_tasks
    from nexa.infra.cost import PriceTable, UnknownPriceError

    models = resolve_specs(lab, model, run_id, role)
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
    abstention = abstention_report(scored, metric)
    paths = write_leaderboard(work, rows, metric=metric, abstention=abstention)
    report = lab.durable().location(f"eval/{run.run_id}/{paths['report_json'].name}")  # where step_run puts it
    run.update(eval_status="done", eval_report=report,
               eval_summary={f"{r['model']}/{r['capability']}/{r['metric']}": r["score"] for r in rows})
    console.print(leaderboard_table(rows))
    return {"scores": nested_scores(rows, metric), "rows": len(rows), **_abstention_summary(abstention)}


def _abstention_summary(abstention: dict) -> dict:
    """``{"abstention": ...}`` for a summary when a gated bundle was evaluated (printed as a table), else nothing."""
    if not abstention:
        return {}
    console.print(table("abstention (uncertainty gate)", ["model", "capability", "coverage", "error answered", "alpha", "n"],
                        [(m, c, a["coverage"], a["error_answered"], a["alpha"], a["n"])
                         for m, caps in abstention.items() for c, a in caps.items()]))
    return {"abstention": abstention}


def resolve_specs(lab: Lab, refs: list[str], run_id: str | None, role: str | None) -> list[ModelSpec]:
    """The models ``--model`` (paths, bundles, URL#MODEL, run ids) and ``--run-id`` name, under one role."""
    if not refs and not run_id:
        raise ValueError("pass --model PATH (checkpoint folder or bundle; repeatable) or --run-id RUN "
                         "(evaluate the models that run made)")
    specs = [s for ref in refs for s in resolve_models(lab, ref, role)]
    specs += resolve_models(lab, run_id, role) if run_id else []
    return specs


def judges_of(lab: Lab, how: dict, budget_usd: float | None = None) -> tuple[list[str], Any]:
    """The judge names of ``--judges`` (comma-separated) and the LLM judge they need (None when none does), from
    the judging options ``nexa eval judge`` and ``nexa eval run`` share (judges, judge_url, judge_model, rubric)."""
    names = [j.strip() for j in how["judges"].split(",") if j.strip()]
    return names, open_llm_judge(lab, names, how["judge_url"], how["judge_model"], how["rubric"], budget_usd)


def open_llm_judge(lab: Lab, judges: list[str], url: str | None, model: str | None, rubric: Path | None,
                   budget_usd: float | None = None):
    """The LLM judge ``--judges llm``/``pairwise`` need (None for the others), priced from the lab's table."""
    if not {"llm", "pairwise"} & set(judges):
        return None
    if not (url and model and rubric):
        raise ValueError("--judges llm/pairwise needs --judge-url (OpenAI-compatible, e.g. http://127.0.0.1:8000/v1), "
                         "--judge-model and --rubric rubrics/NAME.yaml")
    from nexa.eval.llm_judge import LLMJudge, load_rubric
    from nexa.infra.cost import PriceTable, UnknownPriceError

    price = None
    try:
        price = PriceTable.from_lab(lab).model_price(model)
    except UnknownPriceError:
        console.print(f"[yellow]note:[/yellow] judge model {model!r} has no price in nexa.yaml: its calls are "
                      "counted as free (self-hosted); price it to see judge spend in the cost column")
    return LLMJudge(url, model, load_rubric(rubric), lab, price=price, budget_usd=budget_usd)


def judge_step(run, work: Path, items: list[dict], judges: list[str], llm, against: str | None = None) -> list[dict]:
    """Score generations with each judge into ``scores.jsonl``; the run records which judges (model, prompt hash)."""
    if llm is not None:
        llm.run_id = run.run_id  # cached verdicts name the run that paid for them
    scored = judge_items(items, judges, llm, against=against)
    write_jsonl(work / "scores.jsonl", scored)
    ids = sorted({(s["judge_model_id"], s["judge_prompt_hash"]) for s in scored})
    run.update(judge_model_id=";".join(i for i, _ in ids), judge_prompt_hash=";".join(h for _, h in ids))
    return scored


def lm_eval_step(lab: Lab, model: str, tasks: str, include_path: Path | None, role: str, limit: int | None,
                 num_fewshot: int | None) -> tuple[str, dict, str]:
    """lm-evaluation-harness tasks (comma-separated names) on a bundle (served on a loopback port), a checkpoint or an
    endpoint, in one run whose leaderboard records each task's version, n-shot and hashes: (model name, scores, leaderboard)."""
    from nexa.eval import harness

    tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    with harness.target(model, lab.scratch / "lm-eval" / "tokenizers" / Path(model).name) as target:
        plan = harness.check(target, tasks, include_path)
        with step_run(lab, "eval_lm_eval", {"model": model, "tasks": tasks, "limit": limit, "num_fewshot": num_fewshot},
                      "eval_report") as step:
            summary = harness.evaluate(plan, step.work, role, limit, num_fewshot)
    return target.name, summary, leaderboard_of(step.result)


def leaderboard_of(result: dict) -> str:
    """Where a finished eval step's leaderboard is."""
    return next(o["path"] for o in result["outputs"] if o["path"].endswith("leaderboard.parquet"))

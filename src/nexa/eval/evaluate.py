"""The three eval steps behind ``nexa eval``: generate (cached), judge (per item, per metric), analyze.

Each step reads and writes plain JSON-lines so the steps can run apart (``generate`` today, ``judge``
with a new rubric tomorrow) or together (``run``). Items carry everything a leaderboard row needs:
model, role, capability, dataset, prompt, reference, output, latency and cost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from nexa.eval.exact import JUDGE_ID, JUDGE_PROMPT_HASH, NUMERIC_JUDGE_ID, exact_match, numeric_match, numeric_prompt_hash
from nexa.eval.leaderboard import ROLES
from nexa.eval.rubric import HEURISTIC_JUDGE_ID, HEURISTIC_PROMPT_HASH, score_all
from nexa.eval.tasks import Task
from nexa.ledger import Lab
from nexa.ledger.console import progress
from nexa.ledger.runs import load_run

JUDGES = ("exact", "numeric", "rubric", "similarity", "llm", "pairwise")


@dataclass
class ModelSpec:
    name: str
    role: str
    path: Path | None
    endpoint: tuple[str, str] | None = None  # (base URL, model) of an API teacher


def resolve_models(lab: Lab, ref: str, role: str | None = None, name: str | None = None) -> list[ModelSpec]:
    """A model folder (checkpoint or bundle), an API teacher ``URL#MODEL`` (OpenAI-compatible, e.g.
    ``https://api.openai.com/v1#gpt-4o``), or a run id whose outputs hold models (every one of them).

    A ref is read as a path first, so a folder named like a run id is never mistaken for one.
    """
    from nexa.eval.generate import ModelNotFoundError, model_kind

    if ref.startswith(("http://", "https://")):
        url, _, model = ref.partition("#")
        if not model:
            raise ModelNotFoundError(f"{ref}: an API teacher is URL#MODEL, e.g. https://api.openai.com/v1#gpt-4o")
        return [ModelSpec(name or model, role or "teacher", None, (url, model))]
    path = Path(ref).expanduser()
    if path.exists():
        model_kind(path)
        return [ModelSpec(name or _default_name(path), role or "student", path)]
    manifest = load_run(lab, ref)
    found = [spec for out in manifest.outputs for spec in _models_in(out.ref.split(":")[0], Path(out.path))]
    if not found:
        raise ModelNotFoundError(f"run {ref} has no model among its outputs ({[o.ref for o in manifest.outputs] or 'none'}); "
                                 "pass --model PATH to a checkpoint folder or bundle")
    return [ModelSpec(s.name, role or s.role, s.path) for s in found]


def _default_name(path: Path) -> str:
    """``…/<stage>/<key>/model`` (a stage output) is named after its stage; anything else after its folder."""
    path = path.resolve()
    return path.parent.parent.name if path.name == "model" and len(path.parts) > 3 else path.name


def _models_in(name: str, path: Path) -> list[ModelSpec]:
    from nexa.eval.generate import ModelNotFoundError, model_kind

    candidates = [path / "model", path] + sorted(p.parent for p in path.glob("*/manifest.json"))
    for candidate in candidates:
        try:
            model_kind(candidate)
        except ModelNotFoundError:
            continue
        return [ModelSpec(name, _role_of(name), candidate)]
    return []


def _role_of(stage_name: str) -> str:
    return next((r for r in ROLES if stage_name.startswith(r)), "student")


def generate_items(lab: Lab, models: list[ModelSpec], tasks: list[Task], max_new_tokens: int,
                   usd_per_hour: float = 0.0, run=None, budget_usd: float | None = None) -> tuple[list[dict], dict[str, int]]:
    """Every model on every task, through the durable generation cache (API teachers: through the teachers
    layer's response cache, prices and ``budget_usd``); returns items and cache counts."""
    from nexa.eval.abstention import bundle_gate, gate_fields
    from nexa.eval.cache import GenerationCache, cached_generate
    from nexa.eval.generate import Generator, model_hash

    items, counts = [], {"cached": 0, "generated": 0}
    with progress() as bar:
        job = bar.add_task("generating", total=len(models) * len(tasks))
        for spec in models:
            if spec.endpoint is not None:
                for task in tasks:
                    gens, costs, cached = api_generate(lab, spec, [i["prompt"] for i in task.items], max_new_tokens, run,
                                                       budget_usd)
                    items += [{**_item(spec, task, row, gen, 0.0), "cost_usd": cost}
                              for row, gen, cost in zip(task.items, gens, costs)]
                    counts["cached"] += cached
                    counts["generated"] += len(gens) - cached
                    bar.advance(job)
                continue
            generator, gate = Generator(spec.path), bundle_gate(spec.path)
            params = {"decoding": "greedy", "max_new_tokens": max_new_tokens, **({"gate_confidence": True} if gate else {})}
            cache = GenerationCache(lab.durable(), model_hash(spec.path), params)  # gated: entries that hold confidences
            for task in tasks:
                gens = cached_generate(generator, cache, [i["prompt"] for i in task.items], max_new_tokens)
                items += [{**_item(spec, task, row, gen, usd_per_hour), **(gate_fields(gate, gen) if gate else {})}
                          for row, gen in zip(task.items, gens)]
                bar.advance(job)
            counts["cached"] += cache.hits
            counts["generated"] += cache.misses
    return items, counts


def api_generate(lab: Lab, spec: ModelSpec, prompts: list[str], max_new_tokens: int, run,
                 budget_usd: float | None) -> tuple[list, list[float], int]:
    """An API teacher's greedy answers through nexa.teachers (cached, priced, budgeted): generations, what
    each answer cost when bought, and how many came from the cache. Unanswered prompts are an error."""
    from nexa.eval.generate import Generation
    from nexa.infra.cost import PriceTable
    from nexa.teachers.answering import ask
    from nexa.teachers.opening import open_teacher
    from nexa.teachers.protocol import GenerationParams, TeacherRequest

    url, model = spec.endpoint
    teacher = open_teacher(url, model)
    params = GenerationParams(max_tokens=max_new_tokens, temperature=0.0)
    try:
        answers = ask(lab, teacher, [TeacherRequest.from_prompt(p, params) for p in prompts], PriceTable.from_lab(lab),
                      getattr(run, "run_id", None), run.log if run is not None else (lambda *a, **k: None),
                      budget_usd=budget_usd)
    finally:
        teacher.close()
    if answers.failures:
        first = next(iter(answers.failures.values()))
        raise ValueError(f"API teacher {spec.name}: {len(answers.failures)} of {len(prompts)} prompts unanswered "
                         f"({answers.stopped or 'errors'}; first: {first}); the answers bought so far are cached, "
                         "rerun to continue (a higher --budget-usd if the budget stopped it)")
    gens = [Generation(p, e.response.text, e.response.latency_ms, e.response.output_tokens)
            for p, e in zip(prompts, answers.entries)]
    if run is not None:
        run.log("api_teacher_eval", teacher=teacher.teacher_id, hits=answers.hits, misses=answers.misses,
                spent_usd=answers.spent_usd)
    return gens, [e.cost_usd for e in answers.entries], answers.hits


def _item(spec: ModelSpec, task: Task, row: dict, gen, usd_per_hour: float) -> dict:
    return {"model": spec.name, "role": spec.role, "capability": row.get("capability") or task.name,
            "dataset": task.ref, "prompt": row["prompt"], "reference": row["answer"], "output": gen.output,
            "latency_ms": gen.latency_ms, "new_tokens": gen.new_tokens,
            "cost_usd": usd_per_hour * gen.latency_ms / 3_600_000}


def judge_items(items: list[dict], judges: Iterable[str], llm=None, rel_tol: float = 1e-6,
                against: str | None = None) -> list[dict]:
    """One scored record per (item, metric); every record names its judge id and prompt hash.

    ``pairwise`` compares each model's output with model ``against``'s on the same prompt through
    the LLM judge, both orders; the score is the win rate (1 win, 0.5 tie, 0 loss).
    """
    judges = list(judges)
    unknown = sorted(set(judges) - set(JUDGES))
    if unknown:
        raise ValueError(f"unknown judges {unknown}; choose from {list(JUDGES)}")
    if {"llm", "pairwise"} & set(judges) and llm is None:
        raise ValueError("the llm and pairwise judges need --judge-url, --judge-model and --rubric")
    if "pairwise" in judges and not against:
        raise ValueError("the pairwise judge needs --against MODEL (the model every other one is compared with)")
    scored: list[dict] = []
    base = [{k: v for k, v in i.items()} for i in items]
    if "exact" in judges:
        scored += [_score(i, "exact_match", exact_match(i["output"], i["reference"]), JUDGE_ID, JUDGE_PROMPT_HASH) for i in base]
    if "numeric" in judges:
        scored += [_score(i, "numeric_match", numeric_match(i["output"], i["reference"], rel_tol=rel_tol),
                          NUMERIC_JUDGE_ID, numeric_prompt_hash(rel_tol, 0.0)) for i in base]
    if "rubric" in judges:
        scored += [_score(i, metric, value, HEURISTIC_JUDGE_ID, HEURISTIC_PROMPT_HASH)
                   for i in base for metric, value in score_all(i["output"]).items()]
    if "similarity" in judges:
        scored += _similarity(base)
    if "llm" in judges:
        scored += [_llm(i, llm) for i in base]
    if "pairwise" in judges:
        scored += _pairwise(base, llm, against)
    return scored


def _pairwise(items: list[dict], judge, against: str) -> list[dict]:
    reference = {i["prompt"]: i for i in items if i["model"] == against}
    if not reference:
        raise ValueError(f"--against {against!r} has no generations here; models: {sorted({i['model'] for i in items})}")
    metric = f"pairwise:{judge.rubric.id}@v{judge.rubric.version}:vs:{against}"
    scored = []
    for item in items:
        if item["model"] == against or item["prompt"] not in reference:
            continue
        verdict = judge.compare(item["prompt"], item["output"], reference[item["prompt"]]["output"])
        scored.append(_score(item, metric, {"a": 1.0, "tie": 0.5, "b": 0.0}[verdict.winner], verdict.judge_model_id,
                             verdict.judge_prompt_hash, pairwise_first_order=verdict.first_order,
                             pairwise_swapped_order=verdict.swapped_order))
    return scored


def _score(item: dict, metric: str, score: float, judge_id: str, prompt_hash: str, **extra) -> dict:
    return {**item, "metric": metric, "score": float(score), "judge_model_id": judge_id, "judge_prompt_hash": prompt_hash, **extra}


def _similarity(items: list[dict]) -> list[dict]:
    from nexa.eval.similarity import SIMILARITY_JUDGE_ID, reference_similarity, similarity_prompt_hash

    values = reference_similarity([i["output"] for i in items], [i["reference"] for i in items])
    return [_score(i, "reference_similarity", v, SIMILARITY_JUDGE_ID, similarity_prompt_hash()) for i, v in zip(items, values)]


def _llm(item: dict, judge) -> dict:
    verdict = judge.score(item["prompt"], item["output"], item["reference"])
    scored = _score(item, f"llm:{judge.rubric.id}@v{judge.rubric.version}", verdict.score, verdict.judge_model_id,
                    verdict.judge_prompt_hash, judge_reason=verdict.reason, judge_cost_usd=verdict.cost_usd)
    scored["cost_usd"] = item.get("cost_usd", 0.0) + verdict.cost_usd  # the judge's spend is part of this score's cost
    return scored


def write_jsonl(path: Path, rows: Iterable[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, sort_keys=True) + "\n")
    return path


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path} line {number}: not JSON ({exc.msg})") from exc
    return rows

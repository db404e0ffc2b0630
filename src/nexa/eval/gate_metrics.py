"""The registry's benchmark and metric per capability, computed the same way by every gate (NIWT's runtime gate
and the bundle's teacher-free verify) for the teacher's and the student's side.

A capability's ``metric`` in the teacher registry is one of:

- a per-item rule (``exact_match``, ``accuracy``, ``numeric_match``; :mod:`nexa.eval.metrics`) on the
  generations of the benchmark's prompts;
- ``judge:<rubric>``: an LLM judge (any OpenAI-compatible endpoint, :class:`~nexa.eval.llm_judge.LLMJudge`)
  scores each generation with ``rubrics/<rubric>.yaml``; the score is mapped from the rubric's scale onto
  [0, 1] (``(s - min) / (max - min)``) so the teacher floor and retention read like every other metric.
  Judge calls go through the teachers layer's cache, prices and budget;
- ``lm_eval:<metric>``: the lm-evaluation-harness task named by the capability's ``benchmark`` (a local task
  YAML in the gate's include folder, or a built-in task with cached data), scored by its ``<metric>``
  (e.g. ``acc``); the model answers lm-eval's requests (log-likelihoods, generations) itself.

Every metric yields one value in [0, 1] per item (per document for lm-eval), so retention and its interval
(:mod:`nexa.ledger.retention`) are computed from the same per-item lists whatever the metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean, pvariance
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

JUDGE_PREFIX = "judge:"
LM_EVAL_PREFIX = "lm_eval:"
GateMetricKind = Literal["item", "judge", "lm_eval"]

Loglikelihood = Callable[[list[tuple[str, str]]], list[tuple[float, bool]]]
Generate = Callable[[list[tuple[str, list[str], int]]], list[str]]  # (context, stop strings, most new tokens) -> texts


class GateMetricError(ValueError):
    """A metric the gate cannot compute as configured (unknown name, no judge, lm-eval task missing)."""


def metric_kind(metric: str) -> GateMetricKind:
    """Which of the three kinds a registry metric is; an unknown per-item name is refused with the known ones."""
    if metric.startswith(JUDGE_PREFIX) and metric[len(JUDGE_PREFIX):]:
        return "judge"
    if metric.startswith(LM_EVAL_PREFIX) and metric[len(LM_EVAL_PREFIX):]:
        return "lm_eval"
    from nexa.eval.metrics import item_scorer

    item_scorer(metric)  # raises with the known names
    return "item"


class GateJudge(BaseModel):
    """The judge a gate asks for ``judge:<rubric>`` metrics."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    url: str = Field(description="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1.")
    model: str = Field(description="The judge model served there (its price comes from nexa.yaml; unpriced = free).")
    rubric_dir: str = Field("rubrics", description="Folder of rubric YAMLs; judge:NAME reads NAME.yaml there.")
    budget_usd: float | None = Field(None, ge=0, description="Most USD new judge calls of one gate may spend.")


@dataclass
class GateScoring:
    """What a gate needs beyond per-item rules: the lab (the judge's cache), the judge, lm-eval's task folder."""

    lab: Any = None
    judge: GateJudge | None = None
    include_path: Path | None = None
    run_id: str | None = None
    _judges: dict = field(default_factory=dict, repr=False)

    def open_judge(self, rubric_id: str):
        """One :class:`LLMJudge` per rubric, shared by every call of this gate (so one budget covers them)."""
        if self.judge is None or self.lab is None:
            raise GateMetricError(f"metric judge:{rubric_id} needs a judge: pass the gate a judge (url, model) and a lab")
        if rubric_id not in self._judges:
            from nexa.eval.llm_judge import LLMJudge, load_rubric
            from nexa.infra.cost import PriceTable, UnknownPriceError

            try:
                price = PriceTable.from_lab(self.lab).model_price(self.judge.model)
            except UnknownPriceError:
                price = None  # self-hosted: free, as `nexa eval judge` treats it
            rubric = load_rubric(Path(self.judge.rubric_dir) / f"{rubric_id}.yaml")
            self._judges[rubric_id] = LLMJudge(self.judge.url, self.judge.model, rubric, self.lab, price=price,
                                               budget_usd=self.judge.budget_usd, run_id=self.run_id)
        return self._judges[rubric_id]

    @property
    def judge_spent_usd(self) -> float:
        return sum(j.spent_usd for j in self._judges.values())

    def close(self) -> None:
        for judge in self._judges.values():
            judge.close()


class GateScoringFile(BaseModel):
    """``--gate-scoring FILE`` (JSON or YAML): the judge and lm-eval task folder for a gate run from the CLI."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    judge: GateJudge | None = None
    include_path: str | None = Field(None, description="Folder of lm-eval task YAMLs (relative to the file's folder).")


def load_gate_scoring(lab, path: Path | None, run_id: str | None = None) -> GateScoring:
    """The scoring a ``--gate-scoring`` file describes (none: per-item metrics only); a bad file is a ValueError."""
    if path is None:
        return GateScoring(lab, run_id=run_id)
    import yaml
    from pydantic import ValidationError

    if not path.is_file():
        raise GateMetricError(f"--gate-scoring {path} does not exist")
    try:
        spec = GateScoringFile.model_validate(yaml.safe_load(path.read_text()))
    except yaml.YAMLError as exc:
        raise GateMetricError(f"--gate-scoring {path}: not YAML/JSON ({type(exc).__name__})") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise GateMetricError(f"--gate-scoring {path}: {problems}") from None
    include = (path.parent / spec.include_path).resolve() if spec.include_path else None
    return GateScoring(lab, spec.judge, include, run_id)


def gate_scoring(ctx, judge: dict | None, include_path: str | None) -> GateScoring:
    """A pipeline stage's scoring from its ``judge`` and ``include_path`` parameters."""
    return GateScoring(ctx.lab, GateJudge.model_validate(judge) if judge else None,
                       Path(include_path) if include_path else None, ctx.run.run_id)


def check_scoring(metrics: dict[str, str], scoring: GateScoring | None) -> None:
    """Refuse, before any model runs, a metric this gate cannot compute: unknown names, a judge metric without a
    judge (or without its rubric file)."""
    for capability, metric in sorted(metrics.items()):
        if metric_kind(metric) == "judge":
            (scoring or GateScoring()).open_judge(metric[len(JUDGE_PREFIX):])


def score_generations(rows: list[dict], outputs: list[str], metrics: dict[str, str],
                      scoring: GateScoring | None = None) -> dict[str, list[float]]:
    """Per capability, the per-item values of its metric on ``outputs`` (one per row, in order); capabilities
    measured by an lm-eval task are left out (see :func:`lm_eval_items`)."""
    from nexa.eval.metrics import item_scorer

    values: dict[str, list[float]] = {}
    judged: dict[str, list[int]] = {}
    for index, (row, output) in enumerate(zip(rows, outputs)):
        metric = metrics.get(row["capability"], "exact_match")
        kind = metric_kind(metric)
        if kind == "item":
            values.setdefault(row["capability"], []).append(float(item_scorer(metric)(output, row["answer"])))
        elif kind == "judge":
            judged.setdefault(metric[len(JUDGE_PREFIX):], []).append(index)
    for rubric_id, indices in sorted(judged.items()):
        judge = (scoring or GateScoring()).open_judge(rubric_id)
        verdicts = judge.score_many([(rows[i]["prompt"], outputs[i], rows[i]["answer"]) for i in indices])
        low, high = judge.rubric.scale_min, judge.rubric.scale_max
        for i, verdict in zip(indices, verdicts):
            values.setdefault(rows[i]["capability"], []).append((verdict.score - low) / (high - low))
    return dict(sorted(values.items()))


def lm_eval_tasks(metrics: dict[str, str], benchmarks: dict[str, str]) -> dict[str, tuple[str, str]]:
    """{capability: (lm-eval task, its metric)} for the capabilities the registry measures with lm-eval."""
    return {c: (benchmarks[c], m[len(LM_EVAL_PREFIX):]) for c, m in sorted(metrics.items()) if metric_kind(m) == "lm_eval"}


def lm_eval_items(loglikelihood: Loglikelihood, generate: Generate, tasks: dict[str, tuple[str, str]],
                  include_path: Path | None) -> dict[str, list[float]]:
    """Per capability, the per-document values of its lm-eval task's metric, the model answering lm-eval's
    requests through ``loglikelihood`` and ``generate`` (greedy)."""
    if not tasks:
        return {}
    import lm_eval
    from lm_eval.tasks import TaskManager

    names = sorted({task for task, _ in tasks.values()})
    manager = TaskManager(include_path=str(include_path), include_defaults=False) if include_path else TaskManager()
    missing = [t for t in names if t not in manager.all_tasks]
    if missing:
        where = f"in {include_path}" if include_path else "among lm-eval's tasks (local ones: the gate's include path)"
        raise GateMetricError(f"lm-eval task(s) {missing} named by the registry are not {where}")
    results = lm_eval.simple_evaluate(model=_CallableLM(loglikelihood, generate), tasks=names, task_manager=manager,
                                      log_samples=True, bootstrap_iters=0)
    values = {}
    for capability, (task, metric) in sorted(tasks.items()):
        samples = results["samples"][task]
        if not samples or metric not in samples[0]:
            known = sorted(k for k in (samples[0] if samples else {}) if k not in {"doc", "doc_id", "target", "arguments",
                           "resps", "filtered_resps", "filter", "metrics", "doc_hash", "prompt_hash", "target_hash"})
            raise GateMetricError(f"lm-eval task {task} has no per-document metric {metric!r}; it reports {known}")
        per_doc = [float(s[metric]) for s in sorted(samples, key=lambda s: s["doc_id"])]
        if any(not 0.0 <= v <= 1.0 for v in per_doc):
            raise GateMetricError(f"lm-eval metric {task}:{metric} is not a score in [0, 1]; the gate needs one "
                                  "(higher is better) to compute retention")
        values[capability] = per_doc
    return values


def nexus_answerers(model) -> tuple[Loglikelihood, Generate]:
    """lm-eval's two request kinds answered by a :class:`nexus.NexusModel` (the router picks each adapter)."""
    def generate(requests: list[tuple[str, list[str], int]]) -> list[str]:
        return [model.generate_batch([context], max_new_tokens=most, stop=list(until) or None)[0]
                for context, until, most in requests]

    return model.loglikelihood, generate


def torch_answerers(model, tokenizer, route: Callable[[str], str] | None = None) -> tuple[Loglikelihood, Generate]:
    """lm-eval's two request kinds answered by an HF causal LM (a ``tokenizers.Tokenizer``, prompts encoded as
    generation encodes them); with ``route``, a PEFT model switches to the adapter it picks for each context."""
    import torch

    from nexa.eval.generate import greedy_generate

    def use(context: str) -> None:
        if route is not None:
            model.set_adapter(route(context))

    @torch.inference_mode()
    def loglikelihood(pairs: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        out = []
        for context, continuation in pairs:
            use(context)
            ids = tokenizer.encode(context).ids
            tail = tokenizer.encode(continuation, add_special_tokens=False).ids
            if not tail:
                raise GateMetricError("lm-eval asked the log-likelihood of an empty continuation")
            logits = model(input_ids=torch.tensor([ids + tail])).logits[0, len(ids) - 1:-1].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            target = torch.tensor(tail)
            out.append((float(logprobs.gather(-1, target[:, None]).sum()), bool((logprobs.argmax(-1) == target).all())))
        return out

    def generate(requests: list[tuple[str, list[str], int]]) -> list[str]:
        texts = []
        for context, until, most in requests:
            use(context)
            text = greedy_generate(model, tokenizer, [context], max_new_tokens=most)[0].output
            cuts = [text.index(stop) for stop in until if stop and stop in text]
            texts.append(text[:min(cuts)] if cuts else text)
        return texts

    return loglikelihood, generate


def capability_items(rows: list[dict], outputs: list[str], contracts: dict[str, dict], scoring: GateScoring | None,
                     answerers: Callable[[], tuple[Loglikelihood, Generate]]) -> dict[str, list[float]]:
    """Per capability the per-item values of its registry metric ({capability: {"metric", "benchmark"}}):
    generations scored per item or by the judge, lm-eval tasks answered by ``answerers()`` (called only when
    some capability needs lm-eval)."""
    metrics = {c: k.get("metric", "exact_match") for c, k in contracts.items()}
    values = score_generations(rows, outputs, metrics, scoring)
    tasks = lm_eval_tasks(metrics, {c: k.get("benchmark", c) for c, k in contracts.items()})
    if tasks:
        values.update(lm_eval_items(*answerers(), tasks, scoring.include_path if scoring else None))
    return dict(sorted(values.items()))


def summarize(values: dict[str, list[float]]) -> tuple[dict[str, float], dict[str, int], dict[str, float]]:
    """Mean score, item count and per-item (population) variance per capability."""
    scores = {c: fmean(v) for c, v in values.items() if v}
    return scores, {c: len(v) for c, v in values.items() if v}, {c: pvariance(v) for c, v in values.items() if v}


def _lm_class():
    from lm_eval.api.model import LM

    class CallableLM(LM):
        """lm-eval's model interface over two callables, so any model the lab can run answers lm-eval's requests."""

        def __init__(self, loglikelihood: Loglikelihood, generate: Generate):
            super().__init__()
            self._loglikelihood, self._generate = loglikelihood, generate

        def loglikelihood(self, requests) -> list[tuple[float, bool]]:
            return self._loglikelihood([tuple(r.args[:2]) for r in requests])

        def loglikelihood_rolling(self, requests) -> list[float]:
            raise GateMetricError("rolling log-likelihood (perplexity) tasks are not scores in [0, 1]; the gate "
                                  "cannot compute retention from them")

        def generate_until(self, requests) -> list[str]:
            asked = []
            for request in requests:  # each request carries its own stop strings and length
                context, kwargs = request.args[0], dict(request.args[1])
                until = kwargs.get("until") or []
                asked.append((context, [until] if isinstance(until, str) else list(until), int(kwargs.get("max_gen_toks", 16))))
            return self._generate(asked)

    return CallableLM


def _CallableLM(loglikelihood: Loglikelihood, generate: Generate):  # noqa: N802 (a class, made lazily)
    return _lm_class()(loglikelihood, generate)


def gated_run(lab, run_type: str, config: dict, scoring_file: Path | None, gate: Callable[[GateScoring], dict],
              **fields: Any) -> tuple[str, dict]:
    """A retention gate (``nexa bundle verify``, ``nexa niwt gate``) in a run of its own: the ``--gate-scoring`` file is
    read before the run opens (a bad one leaves no failed run), and the manifest records each capability's retention."""
    from nexa.ledger.runs import start_run

    scoring = load_gate_scoring(lab, scoring_file)
    with start_run(lab, run_type, config=config) as run:
        scoring.run_id = run.run_id
        report = gate(scoring)
        run.update(eval_status="done", **fields, eval_summary={f"retention/{c}": r for c, r in report["retention"].items()})
    return run.run_id, report

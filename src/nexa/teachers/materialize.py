"""Materializing a teacher: every prompt of a dataset version answered once, as a paired dataset version.

The flow is: read the input version → key each prompt → answer what the cache already holds →
dispatch the rest (retries, budget, breaker; each answer cached as it arrives) → write the paired
rows with lineage to the input and the teacher's identity in the notes → quarantine what stayed
unanswered → write a report with calls, cache hits and misses and cost. Run again, it makes no call.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from nexa.infra.cost import FREE, PriceTable
from nexa.ledger import ArtifactRef, DatasetManifest, Lab
from nexa.ledger.datasets import read_dataset_manifest, read_dataset_rows, write_dataset_version
from nexa.ledger.manifests import dump_manifest
from nexa.ledger.runs import RunContext, RunManifest
from nexa.teachers.cache import CacheEntry, ResponseCache
from nexa.teachers.dispatch import Dispatcher, DispatchSettings
from nexa.teachers.errors import TeacherError
from nexa.teachers.faults import RetryPolicy
from nexa.teachers.protocol import GenerationParams, Teacher, TeacherRequest
from nexa.train.chat import prompt_messages

MATERIALIZE_VERSION = 1
PAIRED_SCHEMA = "paired"
TEACHER_COLUMNS = ("answer", "reference", "input_tokens", "output_tokens", "latency_ms", "cost_usd", "finish_reason",
                   "logprobs")


class MaterializeConfig(BaseModel):
    """Everything that decides what is asked and how; recorded as the run's config (no secrets here)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = MATERIALIZE_VERSION
    dataset: str = Field(description="Input dataset, ID or ID@vN; its 'prompt' column is asked.")
    out: str = Field(description="Id of the paired dataset to write a new version of.")
    prompt_field: str = Field("prompt", description="Column holding the prompt.")
    system: str | None = Field(None, description="System message for chat teachers.")
    params: GenerationParams = Field(default_factory=GenerationParams)
    concurrency: int = Field(8, ge=1, le=256, description="Requests in flight at once (API teachers; a local one: batches).")
    rate_limit_rps: float | None = Field(None, gt=0, description="Rate limit in requests per second (token bucket).")
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    breaker_threshold: int = Field(10, ge=1, description="Consecutive failed calls that stop the run.")
    budget_usd: float | None = Field(None, ge=0, description="Stop before this run's API spend would pass this; keeps what was done.")
    provider: str = Field("local", description="Where this run's compute runs (for its hourly price).")
    gpu_type: str = "cpu"
    seed: int = Field(42, description="Run seed; also the sampling seed when temperature > 0.")


class MaterializeReport(BaseModel):
    """The outcome, written to durable storage beside the run and referenced from its manifest."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = MATERIALIZE_VERSION
    run_id: str
    teacher_id: str
    source: str
    dataset: str | None = None
    path: str | None = None
    prompts: int
    unique_requests: int
    answered: int
    failed: int = Field(description="Rows left without an answer (quarantined with the reason).")
    calls: int = Field(description="Requests sent to the teacher, retries included.")
    retries: int
    cache_hits: int
    cache_misses: int
    cost_usd: float = Field(description="What this run paid (API + compute); cached answers cost nothing again.")
    api_usd: float
    dataset_cost_usd: float = Field(description="What every answer in the output cost when it was bought.")
    seconds: float
    stopped: str | None = None
    error: str | None = None
    quarantine: str | None = None

    def summary(self) -> dict[str, Any]:
        """The fields ``nexa distill materialize`` prints and puts in its ``--json`` result."""
        return self.model_dump(include={"dataset", "path", "calls", "retries", "cache_hits", "cache_misses", "failed",
                                        "answered", "prompts", "cost_usd", "api_usd", "dataset_cost_usd", "stopped",
                                        "teacher_id", "quarantine"})


class MaterializeError(TeacherError):
    """The run stopped without a paired dataset; ``report`` says how far it got (answers stay cached)."""

    def __init__(self, message: str, report: MaterializeReport):
        super().__init__(message)
        self.report = report


class ProgressSink(Protocol):
    def start(self, total: int, done: int) -> None: ...
    def advance(self, answered: int, spent_usd: float) -> None: ...


class _NoProgress:
    def start(self, total: int, done: int) -> None:
        return None

    def advance(self, answered: int, spent_usd: float) -> None:
        return None


def materialize(lab: Lab, teacher: Teacher, config: MaterializeConfig, run: RunContext, prices: PriceTable,
                progress: ProgressSink | None = None) -> MaterializeReport:
    """Answer every prompt of ``config.dataset`` with ``teacher``; see the module docstring for the flow."""
    began = time.perf_counter()
    price = prices.model_price(teacher.model_name) if teacher.bills_tokens else FREE
    prices.hourly(config.provider, config.gpu_type)  # an unknown compute price fails now, before paying for anything
    source, rows = _read_source(lab, config, run)
    run.update(teacher_model=teacher.teacher_id)
    cache = ResponseCache(lab.durable(), teacher.teacher_id)
    keyed, quarantine = _requests(rows, config, cache, source.ref)
    unique = {key: request for _, key, request in keyed}
    hits = cache.lookup(unique)
    run.log("cache_lookup", unique_requests=len(unique), hits=len(hits), misses=len(unique) - len(hits))
    sink = progress or _NoProgress()
    sink.start(len(unique), len(hits))

    settings = DispatchSettings(concurrency=config.concurrency, policy=config.retry,
                                breaker_threshold=config.breaker_threshold, rate_limit_rps=config.rate_limit_rps,
                                budget_usd=config.budget_usd, seed=config.seed)
    dispatcher = Dispatcher(teacher, cache, price, settings, run.run_id, run.log, sink.advance)
    outcome = dispatcher.run([(key, request) for key, request in unique.items() if key not in hits])
    answers = {**hits, **outcome.answers}
    paired, unanswered = _pair(rows, keyed, answers, outcome.failures, config)
    quarantine.extend(unanswered)

    cost = prices.compute_cost(config.provider, config.gpu_type, time.perf_counter() - began, api_usd=outcome.spent_usd)
    run.update(cost=cost, cost_estimate_usd_total=cost.total_usd)
    report = MaterializeReport(
        run_id=run.run_id, teacher_id=teacher.teacher_id, source=source.ref, prompts=len(rows), unique_requests=len(unique),
        answered=len(paired), failed=len(quarantine), calls=outcome.calls, retries=outcome.retries, cache_hits=len(hits),
        cache_misses=len(unique) - len(hits), cost_usd=cost.total_usd, api_usd=outcome.spent_usd,
        dataset_cost_usd=math.fsum(answers[k].cost_usd for k in unique if k in answers),
        seconds=round(cost.compute_hours * 3600, 3), stopped=outcome.stopped,
        error=str(outcome.error) if outcome.error else None,
    )
    run.update(metrics={"calls": report.calls, "retries": report.retries, "cache_hits": report.cache_hits,
                        "cache_misses": report.cache_misses, "answered": report.answered, "failed": report.failed,
                        "api_usd": report.api_usd})
    report.quarantine = _write_quarantine(lab, run, config.out, quarantine)
    if outcome.error is None and paired:
        manifest = _write_paired(lab, run, config, source, teacher, paired)
        report.dataset, report.path = manifest.ref, manifest.path
    _write_report(lab, run, report)
    _raise_if_incomplete(report, outcome.error, quarantine)
    return report


def _read_source(lab: Lab, config: MaterializeConfig, run: RunContext) -> tuple[DatasetManifest, list[dict[str, Any]]]:
    """The input version's manifest and rows (hash-checked), recorded as the run's input."""
    source = read_dataset_manifest(lab, config.dataset)
    rows = read_dataset_rows(lab, source.ref)
    run.add_input(ArtifactRef(kind="dataset", ref=source.ref, path=source.path, sha256=source.content_hash))
    _check_columns(rows, config, source.ref)
    return source, rows


def _raise_if_incomplete(report: MaterializeReport, error: TeacherError | None, quarantine: list[dict[str, Any]]) -> None:
    """A stopped teacher, or no answer at all, fails the run; the report (and the cache) keep the progress."""
    if error is not None:
        raise MaterializeError(
            f"{error}. {report.answered} of {report.prompts} prompts are answered and cached; fix the teacher and "
            "rerun the same command to resume without paying for them again", report) from error
    if report.dataset is None:
        first = quarantine[0]["reason"] if quarantine else "no rows"
        raise MaterializeError(f"no prompt of {report.source} was answered (first reason: {first}); "
                               f"{report.failed} rows quarantined in {report.quarantine}", report)


def _check_columns(rows: list[dict[str, Any]], config: MaterializeConfig, ref: str) -> None:
    """The paired rows add the teacher's columns; an input that already has one of them is refused."""
    if not rows:
        raise ValueError(f"{ref} has no rows to send to the teacher")
    written = set(TEACHER_COLUMNS) - {"answer"} | ({"prompt"} if config.prompt_field != "prompt" else set())
    taken = sorted(set(rows[0]) & written)
    if taken:
        raise ValueError(f"{ref} already has column(s) {taken}, which the paired dataset writes; "
                         "rename them first (the input's 'answer' becomes 'reference')")


def _requests(rows: list[dict[str, Any]], config: MaterializeConfig, cache: ResponseCache,
              ref: str) -> tuple[list[tuple[int, str, TeacherRequest]], list[dict[str, Any]]]:
    """(row index, cache key, request) for every usable row, and quarantine records for the rest."""
    keyed, bad = [], []
    for index, row in enumerate(rows):
        if row.get("messages") is not None:  # a chat row: the conversation goes to the teacher as messages
            try:
                turns = prompt_messages(row["messages"])
            except ValueError as exc:
                bad.append({"dataset": ref, "row": index, "field": "messages", "reason": str(exc)})
                continue
            request = TeacherRequest(messages=tuple((t["role"], t["content"]) for t in turns), params=config.params)
            keyed.append((index, cache.key(request), request))
            continue
        prompt = row.get(config.prompt_field)
        if not isinstance(prompt, str) or not prompt.strip():
            bad.append({"dataset": ref, "row": index, "field": config.prompt_field,
                        "reason": f"expected a non-empty string, got {type(prompt).__name__}: {str(prompt)[:80]!r}"})
            continue
        request = TeacherRequest.from_prompt(prompt, config.params, system=config.system)
        keyed.append((index, cache.key(request), request))
    return keyed, bad


def _pair(rows, keyed, answers: dict[str, CacheEntry], failures: dict[str, str],
          config: MaterializeConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Paired rows in input order, and a quarantine record for each row whose prompt got no answer."""
    paired, unanswered = [], []
    for index, key, request in keyed:
        row = rows[index]
        entry = answers.get(key)
        if entry is None:
            unanswered.append({"row": index, "field": config.prompt_field, "prompt": row.get(config.prompt_field),
                               "reason": failures.get(key, "no answer")})
            continue
        paired.append(_paired_row(row, config, entry))
    return paired, unanswered


def _paired_row(row: dict[str, Any], config: MaterializeConfig, entry: CacheEntry) -> dict[str, Any]:
    response = entry.response
    out = {k: v for k, v in row.items() if k != "answer"}
    if row.get("messages") is not None:  # the teacher's reply becomes the conversation's last assistant turn
        turns = prompt_messages(row["messages"])
        out["messages"] = turns + [{"role": "assistant", "content": response.text}]
        out["prompt"] = next((t["content"] for t in reversed(turns) if t["role"] == "user"), "")
    else:
        out["prompt"] = row[config.prompt_field]
    if "answer" in row:
        out["reference"] = row["answer"]
    out.update(answer=response.text, input_tokens=response.input_tokens, output_tokens=response.output_tokens,
               latency_ms=float(response.latency_ms), cost_usd=float(entry.cost_usd), finish_reason=response.finish_reason)
    if config.params.top_logprobs:
        out["logprobs"] = [lp.model_dump() for lp in response.logprobs] if response.logprobs else None
    return out


def _write_paired(lab: Lab, run: RunContext, config: MaterializeConfig, source: DatasetManifest, teacher: Teacher,
                  paired: list[dict[str, Any]]) -> DatasetManifest:
    params = json.dumps(config.params.model_dump(mode="json"), sort_keys=True)
    notes = f"outputs of teacher {teacher.teacher_id} on {source.ref}; params {params}"
    manifest = write_dataset_version(lab, config.out, paired, row_schema=PAIRED_SCHEMA, parents=[source.ref],
                                     created_by=run.run_id, notes=notes)
    run.add_output(ArtifactRef(kind="dataset", ref=manifest.ref, path=manifest.path, sha256=manifest.content_hash))
    run.update(dataset_id=manifest.ref, dataset_hash=manifest.content_hash)
    return manifest


def _write_quarantine(lab: Lab, run: RunContext, out_id: str, records: list[dict[str, Any]]) -> str | None:
    if not records:
        return None
    data = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records).encode()
    ref = lab.durable().put_bytes(f"datasets/{out_id}/quarantine/{run.run_id}.jsonl", data)
    run.add_output(ref.model_copy(update={"kind": "quarantine"}))
    return ref.path


def _write_report(lab: Lab, run: RunContext, report: MaterializeReport) -> None:
    ref = lab.durable().put_bytes(f"distill/{run.run_id}/report.json", dump_manifest(report), overwrite=True)
    run.add_output(ref.model_copy(update={"kind": "distill_report"}))
    run.log("materialize_report", **report.model_dump(exclude={"run_id"}))


def config_from_options(lab: Lab, options: dict[str, Any], gpu_type: str | None = None) -> MaterializeConfig:
    """The run's config from ``nexa distill materialize``'s options, named as the fields of MaterializeConfig,
    RetryPolicy and GenerationParams they fill (:func:`nexa.ledger.console.model_options`); the run's seed also
    seeds sampling when temperature > 0; the compute is this machine's unless ``gpu_type`` names it."""
    from nexa.ledger.runs import detect_gpu_type

    def named(model: type[BaseModel]) -> dict[str, Any]:
        return {k: options[k] for k in model.model_fields if k in options}

    sampling = {k: v for k, v in named(GenerationParams).items() if k != "seed"}
    return MaterializeConfig(**named(MaterializeConfig), provider=lab.config.provider, gpu_type=gpu_type or detect_gpu_type(),
                             retry=RetryPolicy(**named(RetryPolicy)), params=GenerationParams.with_seed(options["seed"], **sampling))


def with_price_override(prices: PriceTable, model: str | None, price_input: float | None,
                        price_output: float | None) -> PriceTable:
    """The lab's price table, with ``--price-input``/``--price-output`` (USD per million tokens) for the teacher model."""
    if (price_input is None) != (price_output is None):
        raise ValueError("Invalid value for --price-input: give both --price-input and --price-output, or neither")
    if price_input is not None and not model:
        raise ValueError("Invalid value for --price-input: a price needs --teacher-model to attach to")
    return prices if price_input is None else prices.with_model(model, price_input, price_output)


def materialize_run(lab: Lab, teacher: Teacher, config: MaterializeConfig,
                    prices: PriceTable) -> tuple[MaterializeReport | None, RunManifest, tuple[str, int, dict] | None]:
    """:func:`materialize` in a run of its own (``nexa distill materialize``), with a progress bar of prompts done,
    rate and USD spent. A failure is recorded in the run and returned as (message, exit code, fields of the ``--json``
    result): 1 when prompts failed past their retries (what was answered stays cached), 2 for what the user must fix
    (a dataset, price or output that is wrong). A teacher billed by the token needs a price before any run opens (a
    user's mistake otherwise); a local one answers alone, in batches. The teacher is closed at the end."""
    from contextlib import closing

    from nexa.infra.cost import UnknownPriceError
    from nexa.ledger import LedgerError
    from nexa.ledger.console import SpendProgress, console
    from nexa.ledger.runs import start_run

    report, failure = None, None
    with closing(teacher):
        if teacher.bills_tokens:
            try:
                prices.model_price(teacher.model_name)
            except UnknownPriceError as exc:
                raise UnknownPriceError(f"{exc}; or pass --price-input and --price-output") from None
        else:
            config = config.model_copy(update={"concurrency": 1})  # one model in memory: batches, not threads
        with start_run(lab, "distill", config=config.model_dump(mode="json"), seed=config.seed,
                       teacher_model=teacher.teacher_id, gpu_type=config.gpu_type) as run:
            console.print(f"[bold]run_id[/bold] {run.run_id}  teacher {teacher.teacher_id}")
            try:
                with SpendProgress("teacher", "prompts") as bar:
                    report = materialize(lab, teacher, config, run, prices, progress=bar)
            except MaterializeError as exc:
                run.fail(exc)
                failure = (str(exc), 1, exc.report.summary())
            except (TeacherError, UnknownPriceError, LedgerError, ValueError, FileExistsError) as exc:
                run.fail(exc)
                failure = (str(exc), 2, {})
    return report, run.manifest, failure

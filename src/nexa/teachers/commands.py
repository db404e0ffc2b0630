"""``nexa distill ...``: materialize a teacher's answers to a dataset's prompts as a paired dataset version."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from pydantic import ValidationError

from nexa.infra.cost import PriceTable, UnknownPriceError
from nexa.ledger import Lab, LedgerError
from nexa.ledger.console import JSON, LAB, console, emit_result, fail, fields_table, with_options
from nexa.ledger.runs import detect_gpu_type
from nexa.teachers.materialize import MaterializeConfig, materialize_run
from nexa.teachers.opening import TeacherSpecError, open_teacher
from nexa.teachers.options import TEACHER_CALL

app = typer.Typer(help="Distillation data: ask a teacher once, keep every answer (cached, costed, resumable).",
                  no_args_is_help=True)


@app.command("materialize")
@with_options(TEACHER_CALL)
def materialize_command(
    dataset: str = typer.Option(..., "--dataset", help="Input dataset, ID or ID@vN; its 'prompt' column is asked."),
    teacher: str = typer.Option(..., "--teacher", help="OpenAI-compatible API root (http://127.0.0.1:8000/v1) "
                                "or a local HF checkpoint folder."),
    out: str = typer.Option(..., "--out", help="Id of the paired dataset to write a new version of."),
    budget_usd: Optional[float] = typer.Option(None, "--budget-usd", min=0,
                                               help="Stop before this run's API spend would pass this; keeps what was done."),
    prompt_field: str = typer.Option("prompt", "--prompt-field", help="Column holding the prompt."),
    top_logprobs: int = typer.Option(0, "--top-logprobs", min=0, max=20,
                                     help="Keep the top-k log-probabilities per output token."),
    concurrency: int = typer.Option(8, "--concurrency", min=1, max=256,
                                    help="Requests in flight at once (API teachers)."),
    rps: Optional[float] = typer.Option(None, "--rps", min=0.001, help="Rate limit in requests per second (token bucket)."),
    max_attempts: int = typer.Option(6, "--max-attempts", min=1, help="Calls per request, retries included."),
    backoff_s: float = typer.Option(0.5, "--backoff-s", min=0.0,
                                    help="First retry delay; doubles each retry, with jitter."),
    max_backoff_s: float = typer.Option(30.0, "--max-backoff-s", min=0.0),
    breaker: int = typer.Option(10, "--breaker", min=1, help="Consecutive failed calls that stop the run."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Prompts per generate() call (local teachers)."),
    price_input: Optional[float] = typer.Option(None, "--price-input", min=0.0,
                                                help="USD per million input tokens (overrides nexa.yaml)."),
    price_output: Optional[float] = typer.Option(None, "--price-output", min=0.0,
                                                 help="USD per million output tokens (overrides nexa.yaml)."),
    gpu_type: Optional[str] = typer.Option(None, "--gpu-type",
                                           help="This run's compute, for its hourly price (default: detected, e.g. H100x1)."),
    seed: int = typer.Option(42, "--seed"),
    lab_dir: Path = LAB, json_out: bool = JSON, **call,
) -> None:
    """Run a teacher over a dataset's prompts and write the answers as a paired dataset version.

    Every answer is cached in durable storage as it arrives: a rerun (or a run resumed after a
    kill) pays only for prompts that were never answered.
    """
    from nexa.ledger.manifests import validation_problems

    lab, prices = _lab_and_prices(lab_dir, call["teacher_model"], price_input, price_output, json_out)
    try:
        config = MaterializeConfig(
            dataset=dataset, out=out, prompt_field=prompt_field, system=call["system"], concurrency=concurrency, rate_limit_rps=rps,
            breaker_threshold=breaker, budget_usd=budget_usd, provider=lab.config.provider, gpu_type=gpu_type or detect_gpu_type(),
            seed=seed, params=dict(max_tokens=call["max_tokens"], temperature=call["temperature"], top_logprobs=top_logprobs,
                                   seed=seed if call["temperature"] > 0 else None),
            retry=dict(max_attempts=max_attempts, base_delay_s=backoff_s, max_delay_s=max_backoff_s))
    except ValidationError as exc:
        raise typer.BadParameter("; ".join(validation_problems(exc))) from None
    try:
        model = open_teacher(teacher, call["teacher_model"], api=call["api"], key_env=call["api_key_env"], system=call["system"],
                             timeout_s=call["timeout_s"], batch_size=batch_size)
    except TeacherSpecError as exc:
        raise typer.BadParameter(str(exc), param_hint=exc.option) from None
    if model.bills_tokens:
        _require_price(prices, model.model_name)
    else:
        config = config.model_copy(update={"concurrency": 1})  # one model in memory: batches, not threads
    try:
        report, manifest, failure = materialize_run(lab, model, config, prices)
    finally:
        model.close()
    if failure is not None:
        message, code, fields = failure
        _fail(message, json_out, code, run_id=manifest.run_id, **fields)
    result = {"run_id": report.run_id, "status": manifest.status, **report.summary(),
              "outputs": [{"kind": o.kind, "ref": o.ref, "path": o.path, "sha256": o.sha256} for o in manifest.outputs]}
    if not json_out:
        console.print(fields_table(f"distill {report.run_id}", report.summary()))
        if report.failed:
            console.print(f"[yellow]{report.failed} prompt(s) unanswered[/yellow] ({report.stopped or 'errors'}); "
                          f"reasons in {report.quarantine}. Rerun the same command to retry them.")
    emit_result(result, json_out)


def _lab_and_prices(lab_dir: Path, model: str | None, price_input: float | None, price_output: float | None,
                    json_out: bool) -> tuple[Lab, PriceTable]:
    """The lab and its price table, with a --price-input/--price-output override for the teacher model."""
    try:
        lab = Lab.find(lab_dir)
        prices = PriceTable.from_lab(lab)
    except LedgerError as exc:
        _fail(str(exc), json_out, code=2)
    if (price_input is None) != (price_output is None):
        raise typer.BadParameter("give both --price-input and --price-output, or neither", param_hint="--price-input")
    if price_input is not None:
        if not model:
            raise typer.BadParameter("a price needs --teacher-model to attach to", param_hint="--price-input")
        prices = prices.with_model(model, price_input, price_output)
    return lab, prices


def _require_price(prices: PriceTable, model: str) -> None:
    try:
        prices.model_price(model)
    except UnknownPriceError as exc:
        raise typer.BadParameter(f"{exc}; or pass --price-input and --price-output", param_hint="--teacher-model") from None


def _fail(message: str, json_out: bool, code: int, **fields) -> None:
    if json_out:
        emit_result({"status": "failed", "error": message, **fields}, True)
    fail(message, code)

"""``nexa distill ...``: materialize a teacher's answers to a dataset's prompts as a paired dataset version."""

from __future__ import annotations

from typing import Optional

import typer

from nexa.infra.cost import PriceTable
from nexa.ledger import Lab, LedgerError
from nexa.ledger.console import FOUND_LAB, JSON, console, emit_result, fail, fields_table, model_options, with_options
from nexa.teachers.faults import RetryPolicy
from nexa.teachers.materialize import MaterializeConfig, config_from_options, materialize_run, with_price_override
from nexa.teachers.opening import open_teacher
from nexa.teachers.options import TEACHER_CALL
from nexa.teachers.protocol import GenerationParams

app = typer.Typer(help="Distillation data: ask a teacher once, keep every answer (cached, costed, resumable).",
                  no_args_is_help=True)
# The run's settings, as the models that validate them declare them (flags named for the command line).
RUN = model_options(MaterializeConfig, dataset="--dataset", out="--out", budget_usd="--budget-usd", prompt_field="--prompt-field",
                    concurrency="--concurrency", rate_limit_rps="--rps", breaker_threshold="--breaker", seed="--seed")
RETRY = model_options(RetryPolicy, max_attempts="--max-attempts", base_delay_s="--backoff-s", max_delay_s="--max-backoff-s")
LOGPROBS = model_options(GenerationParams, top_logprobs="--top-logprobs")


@app.command("materialize")
@with_options(RUN, LOGPROBS, TEACHER_CALL, RETRY)
def materialize_command(
    teacher: str = typer.Option(..., "--teacher", help="OpenAI-compatible API root (http://127.0.0.1:8000/v1) "
                                "or a local HF checkpoint folder."),
    price_input: Optional[float] = typer.Option(None, "--price-input", min=0.0,
                                                help="USD per million input tokens (overrides nexa.yaml)."),
    price_output: Optional[float] = typer.Option(None, "--price-output", min=0.0,
                                                 help="USD per million output tokens (overrides nexa.yaml)."),
    gpu_type: Optional[str] = typer.Option(None, "--gpu-type",
                                           help="This run's compute, for its hourly price (default: detected, e.g. H100x1)."),
    lab: Lab = FOUND_LAB, json_out: bool = JSON, **options,
) -> None:
    """Run a teacher over a dataset's prompts and write the answers as a paired dataset version.

    Every answer is cached in durable storage as it arrives: a rerun (or a run resumed after a
    kill) pays only for prompts that were never answered.
    """
    prices = _prices(lab, options["teacher_model"], price_input, price_output, json_out)
    config = config_from_options(lab, options, gpu_type)
    model = open_teacher(teacher, options["teacher_model"], api=options["api"], key_env=options["api_key_env"],
                         system=options["system"], timeout_s=options["timeout_s"], batch_size=options["batch_size"])
    report, manifest, failure = materialize_run(lab, model, config, prices)  # an unpriced API model: `error: ...`, exit 2
    if failure is not None:
        message, code, fields = failure
        _fail(message, json_out, code, run_id=manifest.run_id, **fields)
    if not json_out and report.failed:
        console.print(f"[yellow]{report.failed} prompt(s) unanswered[/yellow] ({report.stopped or 'errors'}); "
                      f"reasons in {report.quarantine}. Rerun the same command to retry them.")
    emit_result({"run_id": report.run_id, "status": manifest.status, **report.summary(),
                 "outputs": [{"kind": o.kind, "ref": o.ref, "path": o.path, "sha256": o.sha256} for o in manifest.outputs]},
                json_out, fields_table(f"distill {report.run_id}", report.summary()))


def _prices(lab: Lab, model: str | None, price_input: float | None, price_output: float | None, json_out: bool) -> PriceTable:
    """The lab's price table, with a --price-input/--price-output override for the teacher model."""
    try:
        prices = PriceTable.from_lab(lab)
    except LedgerError as exc:
        _fail(str(exc), json_out, code=2)
    return with_price_override(prices, model, price_input, price_output)


def _fail(message: str, json_out: bool, code: int, **fields) -> None:
    if json_out:
        emit_result({"status": "failed", "error": message, **fields}, True)
    fail(message, code)

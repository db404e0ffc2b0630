"""``nexa feedback``: weak capabilities in an eval report become the next dataset version; review queue."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nexa.feedback import review as rv
from nexa.feedback.loop import ROWS_PER_WEAKNESS, feedback_run
from nexa.feedback.rules import DEFAULT_RULES
from nexa.feedback.stages import weakness_table
from nexa.ledger import Lab
from nexa.ledger.console import FOUND_LAB, JSON, LAB, console, emit_result, failing_on, table
from nexa.teachers.errors import TeacherError

app = typer.Typer(help="Turn weak spots in an eval report into new data; review outputs by hand.",
                  invoke_without_command=True)
review_app = typer.Typer(help="Human review queue: sample a run's outputs, accept or exclude them.", no_args_is_help=True)
app.add_typer(review_app, name="review")


@app.callback()
def feedback(ctx: typer.Context, report: Optional[Path] = typer.Option(None, help="eval_report.json (default: the lab's latest)."),
             rule: list[str] = typer.Option(list(DEFAULT_RULES), "--rule", help="Weakness rule, e.g. 'accuracy < 0.9 on capability reasoning' (repeatable)."),
             dataset: list[str] = typer.Option([], "--dataset", help="CAPABILITY=ID@vN to extend (default: the dataset each score was measured on)."),
             rows: int = typer.Option(ROWS_PER_WEAKNESS, min=1, help="New rows per weak capability."),
             seed: int = typer.Option(42, help="Run seed; the new rows use seed + 7919, as the pipeline's feedback stage does."),
             teacher_url: Optional[str] = typer.Option(None, help="OpenAI-compatible teacher to prompt for new rows (default: built-in generators)."),
             teacher_model: Optional[str] = typer.Option(None, help="Model name the teacher serves."),
             lab_dir: Path = LAB, json_out: bool = JSON) -> None:
    """Find weak capabilities in an eval report and write targeted next dataset versions (with lineage)."""
    if ctx.invoked_subcommand is not None:
        return
    with failing_on(TeacherError):  # a missing file or dataset, an unpriced teacher model: the root's `error:` line
        run_id, result, outputs, report_path = feedback_run(Lab.find(lab_dir), report, rule, dataset, rows, seed,
                                                            teacher_url, teacher_model)
    console.print(weakness_table(result.weaknesses))
    console.print(table("new dataset versions", ["capability", "version", "parent", "added", "quarantined"],
                        [(c, m.manifest.ref, ",".join(m.manifest.parents), m.added, len(m.quarantined)) for c, m in result.merged.items()]))
    for capability, reason in result.skipped.items():
        console.print(f"[yellow]skipped[/yellow] {capability}: {reason}")
    emit_result(result.payload(run_id, outputs, report_path), json_out)


@review_app.command("sample")
def review_sample(run_id: str = typer.Option(..., "--run", help="Run whose outputs to review (eval or feedback)."),
                  n: int = typer.Option(20, "--n", min=1), seed: int = typer.Option(42), lab: Lab = FOUND_LAB,
                  json_out: bool = JSON) -> None:
    """Sample N outputs of a run into a new review queue in the ledger."""
    queue = rv.sample_queue(lab, run_id, n, seed)
    emit_result({"run_id": None, "status": "succeeded", "queue_id": queue.queue_id, "items": len(queue.items),
                 "outputs": [{"path": str(rv.queue_path(lab, queue.queue_id))}]}, json_out,
                table(f"review queue {queue.queue_id}", ["item", "capability", "prompt", "output"],
                      [(i.item_id, i.capability, i.prompt[:40], i.output[:40]) for i in queue.items]))


@review_app.command("decide")
def review_decide(queue_id: str = typer.Argument(...), item_id: str = typer.Argument(...),
                  decision: rv.Decision = typer.Argument(..., help="What to record for the item."),
                  reviewer: Optional[str] = typer.Option(None), note: str = typer.Option(""),
                  edited_output: Optional[str] = typer.Option(None, "--edit", help="Accept this corrected answer instead of the output."),
                  lab: Lab = FOUND_LAB, json_out: bool = JSON) -> None:
    """Record accept/exclude (or an edited answer) for one item; the next dataset version honours it."""
    item = rv.decide(lab, queue_id, item_id, decision, reviewer, note, edited_output=edited_output)
    emit_result({"run_id": None, "status": "succeeded", "queue_id": queue_id, "item": item.model_dump(mode="json")}, json_out)


@review_app.command("list")
def review_list(lab: Lab = FOUND_LAB, json_out: bool = JSON) -> None:
    """Every queue with its counts of pending, accepted and excluded items."""
    counts = [{"queue_id": q.queue_id, "source_run": q.source_run, **q.counts()} for q in rv.list_queues(lab)]
    emit_result({"run_id": None, "status": "succeeded", "queues": counts}, json_out,
                table("review queues", ["queue", "source run", "pending", "accept", "exclude"], [tuple(c.values()) for c in counts]))

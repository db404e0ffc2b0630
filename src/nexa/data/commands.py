"""``nexa data ...``: list, show, prepare, generate, augment and diff dataset versions; register row schemas."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Optional

import typer

from nexa.ledger import Lab
from nexa.ledger.console import FOUND_LAB, JSON, console, emit_result, failing_on, progress, skip_teardown_at_exit, table, with_options
from nexa.ledger.registry import DatasetRegistry
from nexa.teachers.options import TEACHER_CALL

app = typer.Typer(help="Datasets: list, show, prepare, generate, augment, diff.", no_args_is_help=True)
schema_app = typer.Typer(help="Row schemas: list the known ones, register your own JSON Schema file.", no_args_is_help=True)
app.add_typer(schema_app, name="schema")


@app.command("list")
def list_datasets(lab: Lab = FOUND_LAB, json_out: bool = JSON) -> None:
    """Every dataset in the registry with its versions, rows and hash."""
    entries = DatasetRegistry(lab.registry_dir).all()
    rows = [(k, f"v{v.version}", v.rows, v.hash[:12], ",".join(v.parents), v.created_by or "") for k, vs in entries.items() for v in vs]
    emit_result({"datasets": {k: [v.model_dump() for v in vs] for k, vs in entries.items()}}, json_out,
                table("datasets", ["id", "version", "rows", "hash", "parents", "created_by"], rows))


@app.command("show")
def show(ref: str = typer.Argument(..., help="ID or ID@vN"), lab: Lab = FOUND_LAB,
         samples: int = typer.Option(3, help="Sample rows to print."),
         verify: bool = typer.Option(False, "--verify", help="Also recompute the row content hash of the whole version "
                                     "(the file's SHA-256 is always checked)."), json_out: bool = JSON) -> None:
    """A version's schema, counts, filters, lineage and a few rows."""
    from nexa.ledger.lean_arrow import arrow_without_pandas
    from nexa.ledger.datasets import read_dataset_head, read_dataset_manifest

    arrow_without_pandas()
    manifest = read_dataset_manifest(lab, ref)
    rows = read_dataset_head(lab, manifest.ref, samples, verify_rows=verify)
    columns = list(rows[0]) if rows else []
    emit_result({"manifest": json.loads(manifest.model_dump_json()), "samples": rows}, json_out, table(f"{manifest.ref}", ["field", "value"], [
        ("schema", f"{manifest.row_schema} v{manifest.row_schema_version}"), ("rows", manifest.rows),
        ("content hash", manifest.content_hash), ("path", manifest.path), ("created by", manifest.created_by or ""),
        ("created at", manifest.created_at.isoformat(timespec="seconds")), ("parents (lineage)", ", ".join(manifest.parents) or "none"),
        ("splits", ", ".join(f"{k}={v}" for k, v in manifest.splits.items()) or "none"), ("notes", manifest.notes)]),
                table("filters", ["name", "version", "removed", "params"],
                      [(f.name, f.version, f.removed, json.dumps(f.params, sort_keys=True)[:120]) for f in manifest.filters]),
                table("sample rows", columns, [[json.dumps(r[c])[:60] if not isinstance(r[c], str) else r[c][:60] for c in columns] for r in rows]))


# -- prepare -------------------------------------------------------------------------------------
THRESHOLDS = {  # the filters' settings, as prepare_options hands them to the filters
    "near_threshold": (float, typer.Option(0.8, min=0.05, max=1.0, help="Jaccard threshold of near-duplicate dedup (MinHash LSH).")),
    "semantic_threshold": (float, typer.Option(0.95, min=0.5, max=1.0, help="Cosine threshold of semantic dedup (MiniLM).")),
    "min_chars": (int, typer.Option(1, min=0, help="Quality: shortest text kept (characters of the schema's text fields).")),
    "max_chars": (int, typer.Option(20_000, min=1, help="Quality: longest text kept.")),
    "max_repetition": (float, typer.Option(0.5, min=0.0, max=1.0, help="Quality: highest share of repeated words (texts of 8+ words).")),
    "min_quality": (float, typer.Option(0.5, min=0.0, max=1.0, help="Quality: lowest quality_score kept (rows that have one).")),
    "max_red_flags": (int, typer.Option(1, min=1, help="Safety: rows with this many hazard-pattern hits leave the version for review.")),
}
DATASET = typer.Option(..., "--dataset", help="Dataset ID to write the new version of.")
SPLITS = typer.Option("train=0.8,val=0.1,test=0.1", help="Split fractions by content hash.")


@app.command("prepare")
@with_options(THRESHOLDS)
def prepare_cmd(
    inputs: list[str] = typer.Option(..., "--input", help="JSONL/CSV/Parquet file, saved HF dataset folder, or ID@vN (repeat for several)."),
    schema_name: str = typer.Option(..., "--schema", help="Row schema: qa, instruction, hypothesis, a registered one, or a .json file."),
    dataset: str = DATASET,
    filters: str = typer.Option("exact,near,quality,safety,unphysical", "--filters",
                                help="Comma-separated, applied in order: exact, near, semantic, quality, safety, unphysical ('' for none)."),
    rule: list[str] = typer.Option([], "--rule", help="Extra unphysical rule as module:function (repeatable)."),
    splits: str = SPLITS,
    split_by: str = typer.Option("near", "--split-by", help="Keep together in one split: 'near' (near-duplicate clusters, "
                                 "so no near-duplicate straddles train and eval) or 'exact' (identical texts only; faster)."),
    strict: bool = typer.Option(False, "--strict", help="Write nothing and exit 1 if any row fails validation."),
    notes: str = typer.Option("", help="Free text stored in the manifest."),
    lab: Lab = FOUND_LAB, json_out: bool = JSON, **thresholds,
) -> None:
    """Validate, filter, dedup and split inputs into a new immutable version ID@vN (same inputs → same version)."""
    from nexa.data.runtime import keep_freed_memory
    from nexa.ledger.lean_arrow import arrow_without_pandas

    arrow_without_pandas()  # this process converts no pandas objects: spare it pandas' import
    keep_freed_memory()  # a short-lived process: freed scratch memory is reused, not faulted in again
    from nexa.data.stages import prepare_version

    with progress(transient=True) as bar:
        task = bar.add_task("validate", total=None)
        run_id, result = prepare_version(lab, inputs, schema_name, dataset, filters, splits, split_by, rule, strict, notes,
                                         lambda n: bar.advance(task, n), lambda name: bar.update(task, description=name), **thresholds)
    skip_teardown_at_exit()  # everything is written and closed: the process ends without Python's teardown
    _finish(run_id, result, json_out)


def _finish(run_id: str, result, json_out: bool) -> None:
    """Print the counts and the result; a refused version (no rows left, --strict) exits 1."""
    console.print(table("prepare", *result.count_rows()))
    if result.problem:
        console.print(f"[red]{result.problem}[/red]" + (f"; quarantine: {result.quarantine}" if result.quarantine else ""))
    else:
        console.print(f"{'wrote' if result.created else 'unchanged, already'} [bold]{result.manifest.ref}[/bold] ({result.manifest.rows} rows)")
    emit_result(result.payload(run_id), json_out)
    if result.problem:
        raise typer.Exit(1)


# -- generate and augment ------------------------------------------------------------------------
@app.command("generate")
def generate_cmd(task: str = typer.Option(..., "--task", help="Built-in capability (reasoning, science, chemistry) or 'hypothesis'."),
                 n: int = typer.Option(..., "--n", min=1, help="Rows to generate."), dataset: str = DATASET,
                 seed: int = typer.Option(42, help="Generator seed (same seed → same rows → same version)."),
                 splits: str = SPLITS, lab: Lab = FOUND_LAB, json_out: bool = JSON) -> None:
    """Generate rows with exact answers from a built-in generator and write them through prepare (validated, deduped, split)."""
    from nexa.data.generators import generate_task
    from nexa.data.stages import generated_version

    rows, schema = generate_task(task, n, seed)
    _finish(*generated_version(lab, "data.generate", {"task": task, "n": n, "seed": seed, "dataset": dataset}, rows, schema,
                               dataset, splits, [], f"built-in generator {task!r}, n={n}, seed {seed}"), json_out)


@app.command("augment")
@with_options(TEACHER_CALL)
def augment_cmd(base: str = typer.Option(..., "--from", help="Base version ID@vN; the new version lists it as parent."),
                capability: str = typer.Option(..., "--capability", help="Built-in capability whose generator makes the new rows "
                                               "(or, with --teacher, the prompts the teacher answers)."),
                n: int = typer.Option(..., "--n", min=1, help="New rows to add."),
                dataset: Optional[str] = typer.Option(None, "--dataset", help="Dataset ID to write (default: the base's ID)."),
                seed: int = typer.Option(43, help="Generator seed."),
                teacher: Optional[str] = typer.Option(None, "--teacher", help="Answer the new prompts with this teacher: an "
                                                      "OpenAI-compatible API root (http://127.0.0.1:8000/v1) or a local HF "
                                                      "checkpoint folder (default: the built-in generator's exact answers)."),
                max_attempts: int = typer.Option(4, "--max-attempts", min=1, help="Calls per prompt, retries included."),
                budget_usd: Optional[float] = typer.Option(None, "--budget-usd", min=0.0, help="Most USD new teacher calls may spend."),
                lab: Lab = FOUND_LAB, json_out: bool = JSON, **call) -> None:
    """Add new rows to a version: exact answers from the built-in generator, or a teacher's answers (--teacher).

    Either way the rows go through prepare with the base version (validated, deduplicated against
    it, split); a prompt the teacher answered with nothing is quarantined with its reason, not dropped.
    """
    from nexa.data.stages import augment_version

    opener, errors = None, ()
    if teacher is not None:  # only here: the generator path never loads the teachers layer
        from nexa.teachers.errors import TeacherError
        from nexa.teachers.prompting import open_prompt_teacher

        opener = partial(open_prompt_teacher, teacher, lab, seed=seed, max_attempts=max_attempts, budget_usd=budget_usd, **call)
        errors = (TeacherError,)
    with failing_on(*errors, prefix="teacher failed: "):
        result = augment_version(lab, base, capability, n, seed, dataset, opener, batch_size=call["batch_size"])
    _finish(*result, json_out)


# -- diff and schemas ----------------------------------------------------------------------------
@app.command("diff")
def diff_cmd(old: str = typer.Argument(..., help="ID@vA"), new: str = typer.Argument(..., help="ID@vB"),
             samples: int = typer.Option(3, help="Rows of each side to print."), lab: Lab = FOUND_LAB, json_out: bool = JSON) -> None:
    """Rows added and removed between two versions."""
    from nexa.data.diff import diff_versions

    summary = diff_versions(lab, old, new).summary(samples)
    changed = [f"{sign} {json.dumps(row, sort_keys=True)[:200]}" for sign, key in (("+", "added_samples"), ("-", "removed_samples"))
               for row in summary[key]]
    emit_result(summary, json_out, table(f"{summary['old']} → {summary['new']}", ["added", "removed", "unchanged"],
                                         [(summary["added"], summary["removed"], summary["unchanged"])]), *changed)


@schema_app.command("list")
def schema_list(lab: Lab = FOUND_LAB, json_out: bool = JSON) -> None:
    """Built-in and lab-registered row schemas."""
    from nexa.data.schema import known_schemas

    found = known_schemas(lab.registry_dir)
    emit_result({"schemas": [{"name": s.name, "version": s.version, "source": s.source, "exact": s.exact} for s in found]}, json_out,
                table("row schemas", ["name", "version", "required", "text fields", "source"],
                      [(s.name, s.version, ",".join(s.document.get("required", [])), ",".join(s.text_fields), s.source) for s in found]))


@schema_app.command("register")
def schema_register(file: Path = typer.Argument(..., help="JSON Schema file with an x-nexa {name, version} block."),
                    lab: Lab = FOUND_LAB, json_out: bool = JSON) -> None:
    """Copy a row schema into the lab's registry so `--schema NAME` finds it."""
    from nexa.data.schema import register_schema

    schema, target = register_schema(lab.registry_dir, file)
    console.print(f"registered [bold]{schema.ref}[/bold] at {target}" + ("" if schema.exact else
                  " (uses keywords beyond the column checks: every row is also checked with jsonschema)"))
    emit_result({"run_id": None, "status": "succeeded", "schema": schema.ref, "path": str(target), "outputs": [{"path": str(target)}]}, json_out)

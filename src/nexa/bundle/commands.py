"""``nexa bundle build|verify``: package a student as a teacher-free bundle and prove it with teachers gone."""

from __future__ import annotations

from pathlib import Path
from typing import List, Literal, Optional

import typer

from nexa.ledger import Lab
from nexa.ledger.console import FALLBACK_URL, FOUND_LAB, JSON, emit_gate, emit_result, require_bundle
from nexa.ledger.hashing import sha256_file
from nexa.pipeline.standalone import require_paths

app = typer.Typer(help="Bundles: build the Nexus layout, verify it teacher-free.", no_args_is_help=True)


@app.command("build")
def build_command(
    model: Path = typer.Option(..., help="Student checkpoint folder (HF Llama weights + tokenizer.json)."),
    router: Path = typer.Option(..., help="Router folder (router/router.safetensors + router.json) from a router stage."),
    out: Path = typer.Option(..., help="Folder to create the bundle in (must not exist)."),
    benchmark: str = typer.Option(..., help="Dataset ID@vN whose eval split (or all rows) is the benchmark."),
    teacher_scores: Path = typer.Option(..., help="JSON {capability: teacher score} the gate compares against."),
    adapters: Optional[Path] = typer.Option(None, help="Folder of per-capability LoRA adapters (<capability>.safetensors)."),
    name: Optional[str] = typer.Option(None, help="Bundle name (default: the out folder's name)."),
    quantize: Optional[Literal["int8"]] = typer.Option(None, help="Row-wise int8 backbone and adapters."),
    allow_uncensored: bool = typer.Option(False, "--allow-uncensored", help="Explicit opt-in to bundle an 'uncensored' capability."),
    max_new_tokens: int = typer.Option(8, min=1, help="Default generation length recorded in the manifest."),
    registry: Optional[Path] = typer.Option(None, help="teacher_registry.json: the gate measures each capability by its metric."),
    teacher_name: Optional[str] = typer.Option(None, help="The registry's teacher (when it lists several)."),
    lab: Lab = FOUND_LAB, json_out: bool = JSON,
) -> None:
    """Build a bundle from a student checkpoint outside a pipeline."""
    from nexa.bundle.build import build_from_checkpoint

    if out.exists():
        raise typer.BadParameter(f"{out} exists; bundles are immutable, choose a new folder", param_hint="--out")
    require_paths(model=model / "model.safetensors", router=router, teacher_scores=teacher_scores, adapters=adapters,
                  registry=registry)
    emit_result(build_from_checkpoint(lab, out, model=model, router=router, benchmark=benchmark, teacher_scores=teacher_scores,
                                      adapters=adapters, name=name, quantize=quantize, allow_uncensored=allow_uncensored,
                                      max_new_tokens=max_new_tokens, registry=registry, teacher_name=teacher_name), json_out)


@app.command("verify")
def verify_command(
    bundle: Path = typer.Argument(..., help="Bundle folder."),
    retain_fraction: Optional[float] = typer.Option(None, min=0.0, max=1.0, help="Student must keep at least this fraction of the teacher's score (default: the lab's)."),
    teacher: List[Path] = typer.Option([], help="Teacher weight paths that must be gone (repeatable)."),
    gate_scoring: Optional[Path] = typer.Option(None, help="JSON/YAML {judge: {url, model}, include_path} for judge:/lm_eval: metrics."),
    lab: Lab = FOUND_LAB, json_out: bool = JSON,
) -> None:
    """Check every hash, that no teacher is reachable or inside, and re-run the per-capability gate in a fresh process."""
    from nexa.bundle.verify import verify_bundle
    from nexa.eval.gate_metrics import gated_run

    require_bundle(bundle)
    retain_fraction = lab.config.retain_fraction if retain_fraction is None else retain_fraction
    report_file = bundle / "verify_report.json"
    run_id, report = gated_run(lab, "verify", {"bundle": str(bundle), "retain_fraction": retain_fraction}, gate_scoring,
                               lambda scoring: verify_bundle(bundle, retain_fraction, forbidden=[str(p) for p in teacher], scoring=scoring),
                               eval_report=str(report_file))
    emit_gate(run_id, report, {"passed": report["passed"], "retention": report["retention"], "verify_report": str(report_file),
                               "outputs": [{"path": str(report_file), "sha256": sha256_file(report_file)}]}, json_out, f"verify {bundle.name}")


@app.command("calibrate-gate")
def calibrate_gate_command(
    bundle: Path = typer.Argument(..., help="Bundle folder."),
    rows: Path = typer.Option(..., help="JSONL of held-out {prompt, answer[, capability]} rows not used in training."),
    alpha: float = typer.Option(0.1, help="Largest error rate tolerated among answered prompts."),
    delta: float = typer.Option(0.1, help="Risk that the certified error bound is wrong (Learn-then-Test level)."),
    fallback_url: Optional[str] = FALLBACK_URL,
    json_out: bool = JSON,
) -> None:
    """Fit the bundle's uncertainty gate (temperature, then a threshold keeping answered error ≤ alpha) into its manifest."""
    from nexa.bundle.uncertainty import calibrate_gate, read_calibration_rows

    require_bundle(bundle)
    require_paths(rows=rows)
    fitted = calibrate_gate(bundle, read_calibration_rows(rows), alpha, delta, fallback_url)
    emit_result({"status": "succeeded", "bundle": str(bundle), **fitted}, json_out,
                f"gate: temperature {fitted['temperature']}, threshold {fitted['threshold']} (None: abstain always); on "
                f"{fitted['calibration_rows']} calibration rows coverage {fitted['calibration_coverage']:.3f}, error among "
                f"answered {fitted['calibration_error_answered']:.3f}")

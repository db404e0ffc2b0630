"""``nexa niwt registry|profile|synthesize|distill|gate``: the NIWT stages outside a pipeline.

Each command runs the same function as its pipeline stage. Inputs are stage output folders (a
pipeline's ``.nexa/durable/stages/<stage>/<key>/`` or a previous command's ``--out``), so the CLI and
the golden pipeline can never drift apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from nexa.ledger import Lab
from nexa.ledger.console import FOUND_LAB, JSON, LAB, console, emit_gate, emit_result, table
from nexa.ledger.hashing import sha256_file
from nexa.ledger.lab import default_retain_fraction
from nexa.pipeline.standalone import outputs, require_paths, run_stage

app = typer.Typer(help="NIWT: teacher registry, profiling, student synthesis, anchored distillation, retention gate.",
                  no_args_is_help=True)


@app.command("registry")
def registry_command(
    csv_file: Path = typer.Option(Path("configs/ModelName-Parameters-Category-BestFeature.csv"), "--csv", help="Teacher CSV."),
    out: Path = typer.Option(Path("configs/teacher_registry.json"), help="Registry JSON to write."),
    retain_fraction: Optional[float] = typer.Option(None, min=0.0, max=1.0, help="Default retain_fraction per capability (default: the lab's, or LabConfig's outside a lab)."),
    lab_dir: Path = LAB, json_out: bool = JSON,
) -> None:
    """Stage 1: build teacher_registry.json from ModelName-Parameters-Category-BestFeature.csv."""
    from nexa.niwt.registry import RegistryError, build_registry

    try:
        registry, quarantined = build_registry(csv_file, out, retain_fraction if retain_fraction is not None else default_retain_fraction(lab_dir))
    except RegistryError as error:
        raise typer.BadParameter(str(error), param_hint="--csv") from error
    emit_result({"run_id": None, "status": "succeeded", "teachers": [t.name for t in registry.teachers],
                 "quarantined": len(quarantined), "outputs": [{"path": str(out), "sha256": sha256_file(out)}]}, json_out,
                table(f"teacher registry ({out})", ["teacher", "parameters", "capabilities"],
                      [(t.name, f"{t.parameters:,}", ", ".join(c.name for c in t.capabilities)) for t in registry.teachers]),
                *(f"[yellow]quarantined[/yellow] {q['reason']}" for q in quarantined))


@app.command("profile")
def profile_command(
    teacher: Path = typer.Option(..., help="Teacher stage output (model/ with HF weights + tokenizer.json)."),
    distill: Path = typer.Option(..., help="Materialized-outputs stage output (dataset.json)."),
    data: Path = typer.Option(..., help="Data stage output (datasets.json) whose eval split is the benchmark."),
    out: Path = typer.Option(..., help="New folder for profiles/<teacher>/<capability>/."),
    name: str = typer.Option("golden-teacher", help="Teacher name (as in the registry)."),
    registry: Optional[Path] = typer.Option(None, help="Folder holding teacher_registry.json (default: built-in contracts)."),
    samples: int = typer.Option(200, min=8, help="Samples per capability."),
    seed: int = typer.Option(42), lab_dir: Path = LAB, json_out: bool = JSON,
) -> None:
    """Stage 2: profile the teacher (ablation pilot, streaming PCA, head importance; no raw activations)."""
    from nexa.niwt.stages import profile

    run_id, summary = run_stage(lab_dir, "niwt-profile", out, {"teacher": teacher, "distill": distill, "data": data,
                                 "teacher_registry": registry}, seed, profile, registry="teacher_registry" if registry else None,
                                 teacher_name=name, config={"samples": samples})
    emit_result({"run_id": run_id, "status": "succeeded", "fraction_of_raw": summary["fraction_of_raw"],
                 "teacher_scores": summary["teacher_scores"], "outputs": outputs(out)}, json_out)


@app.command("synthesize")
def synthesize_command(
    teacher: Path = typer.Option(..., help="Teacher stage output (model/)."),
    profile: Path = typer.Option(..., help="Output of `nexa niwt profile`."),
    out: Path = typer.Option(..., help="New folder for the student backbone and plan."),
    arch: Path = typer.Option(Path("configs/student_arch.json"), help="student_arch.json."),
    seed: int = typer.Option(42), lab_dir: Path = LAB, json_out: bool = JSON,
) -> None:
    """Stage 3: synthesize the student (adapter ranks from intrinsic PCA dimension, transferred backbone)."""
    from nexa.niwt.stages import synthesize
    from nexa.niwt.synthesis import load_arch

    try:
        settings = load_arch(arch).model_dump()
    except (FileNotFoundError, ValueError) as error:
        raise typer.BadParameter(str(error), param_hint="--arch") from error
    run_id, summary = run_stage(lab_dir, "niwt-synthesize", out, {"teacher": teacher, "profile": profile}, seed,
                                 synthesize, arch=settings)
    emit_result({"run_id": run_id, "status": "succeeded", "adapters": summary["adapters"], "param_ratio": summary["param_ratio"],
                 "outputs": outputs(out)}, json_out)


@app.command("distill")
def distill_command(
    profile: Path = typer.Option(..., help="Output of `nexa niwt profile`."),
    synthesize: Path = typer.Option(..., help="Output of `nexa niwt synthesize`."),
    distill: Path = typer.Option(..., help="Materialized-outputs stage output (dataset.json)."),
    data: Path = typer.Option(..., help="Data stage output (datasets.json)."),
    router: Path = typer.Option(..., help="Router stage output (router/router.safetensors)."),
    out: Path = typer.Option(..., help="New folder for model/, adapters/ and gate_report.json."),
    config: Optional[Path] = typer.Option(None, help="JSON with DistillConfig fields (steps, alpha, beta, ...)."),
    max_attempts: int = typer.Option(3, min=1), seed: int = typer.Option(42), lab_dir: Path = LAB, json_out: bool = JSON,
) -> None:
    """Stages 4-5: anchored distillation (teacher not loaded) and the retention gate with adapter-only retries."""
    from nexa.niwt.stages import student_niwt
    from nexa.niwt.student import NiwtGateError

    settings = json.loads(config.read_text()) if config else {}
    try:
        run_id, summary = run_stage(lab_dir, "niwt-distill", out, {"profile": profile, "synthesize": synthesize, "distill": distill,
                                     "data": data, "router": router}, seed, student_niwt, config=settings, max_attempts=max_attempts)
    except NiwtGateError as error:
        console.print(f"[red]gate failed:[/red] {error}")
        raise typer.Exit(1) from error
    emit_result({"run_id": run_id, "status": "succeeded", "retention": summary["gate"]["retention"],
                 "attempts": len(summary["gate_attempts"]), "steps": summary["steps"], "outputs": outputs(out)}, json_out)


@app.command("gate")
def gate_command(
    student: Path = typer.Option(..., help="Output of `nexa niwt distill` (its model/ runs under nexus)."),
    profile: Path = typer.Option(..., help="Output of `nexa niwt profile` (teacher scores and retain fractions)."),
    data: Path = typer.Option(..., help="Data stage output whose eval split is the benchmark."),
    gate_scoring: Optional[Path] = typer.Option(None, help="JSON/YAML {judge: {url, model}, include_path} for judge:/lm_eval: metrics."),
    lab: Lab = FOUND_LAB, json_out: bool = JSON,
) -> None:
    """Stage 5 alone: benchmark the student through the nexus runtime (no teacher, no nexa model code) and gate it."""
    from nexa.eval.gate_metrics import gated_run
    from nexa.niwt.gate import runtime_gate

    require_paths(student=student / "model", profile=profile, data=data / "datasets.json")
    run_id, report = gated_run(lab, "niwt-gate", {"student": str(student), "profile": str(profile)}, gate_scoring,
                               lambda scoring: runtime_gate(lab, student / "model", profile, data / "datasets.json", scoring=scoring))
    emit_gate(run_id, report, {**report, "outputs": []}, json_out, "NIWT gate")

"""``nexa bundle build|verify``: package a student as a teacher-free bundle and prove it with teachers gone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import List, Optional

import typer

from nexa.ledger import Lab
from nexa.ledger.console import console, emit_result, table
from nexa.ledger.hashing import sha256_file
from nexa.ledger.runs import start_run

app = typer.Typer(help="Bundles: build the Nexus layout, verify it teacher-free.", no_args_is_help=True)


@app.command("build")
def build_command(
    model: Path = typer.Option(..., help="Student checkpoint folder (HF Llama weights + tokenizer.json)."),
    router: Path = typer.Option(..., help="Router folder (router/router.safetensors + router.json) from a router stage."),
    out: Path = typer.Option(..., help="Folder to create the bundle in (must not exist)."),
    benchmark: str = typer.Option(..., help="Dataset ID@vN whose eval split (or all rows) is the benchmark."),
    teacher_scores: Path = typer.Option(..., help="JSON {capability: teacher score} the gate compares against."),
    name: Optional[str] = typer.Option(None, help="Bundle name (default: the out folder's name)."),
    quantize: Optional[str] = typer.Option(None, help="'int8' for row-wise int8 backbone and adapters."),
    lab_dir: Path = typer.Option(Path("."), "--lab"),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Build a bundle from a student checkpoint outside a pipeline."""
    from nexa.bundle.build import bundle_size_bytes, model_card, quantize_int8, write_backbone, write_benchmark, write_manifest, write_tokenizer
    from nexa.ledger.datasets import read_dataset_rows

    if out.exists():
        raise typer.BadParameter(f"{out} exists; bundles are immutable, choose a new folder", param_hint="--out")
    if quantize not in (None, "int8"):
        raise typer.BadParameter("only 'int8' is supported", param_hint="--quantize")
    lab = Lab.find(lab_dir)
    with start_run(lab, "bundle", config={"model": str(model), "benchmark": benchmark, "quantize": quantize}) as run:
        config = write_backbone(model, out)
        (out / "adapters").mkdir(exist_ok=True)
        shutil.copytree(router / "router", out / "router")
        write_tokenizer(model / "tokenizer.json", out)
        capabilities = json.loads((router / "router.json").read_text())["capabilities"]
        rows = read_dataset_rows(lab, benchmark)
        items = [{"prompt": r["prompt"], "answer": r["answer"], "capability": r["capability"]}
                 for r in rows if r.get("split", "eval") == "eval"]
        write_benchmark(out, items, json.loads(teacher_scores.read_text()))
        (out / "README.md").write_text(model_card(name or out.name, capabilities, {}, 0, {"run_id": run.run_id, "model_sha256": sha256_file(model / "model.safetensors")}))
        sizes = quantize_int8(out) if quantize else {}
        manifest = write_manifest(out, name=name or out.name, version="1.0.0", format="nexus-bundle", capabilities=capabilities,
                                  adapters={}, safety={"uncensored": False}, backbone=config, built_by=run.run_id,
                                  **({"quantization": "int8-rowwise"} if quantize else {}))
    result = {"run_id": run.run_id, "status": "succeeded", "bundle": str(out), "size_bytes": bundle_size_bytes(out), **sizes,
              "outputs": [{"path": str(out / rel), "sha256": digest} for rel, digest in manifest["files"].items()]}
    emit_result(result, json_out)


@app.command("verify")
def verify_command(
    bundle: Path = typer.Argument(..., help="Bundle folder."),
    retain_fraction: float = typer.Option(0.97, help="Student must keep at least this fraction of the teacher's score."),
    teacher: List[Path] = typer.Option([], help="Teacher weight paths that must be gone (repeatable)."),
    lab_dir: Path = typer.Option(Path("."), "--lab"),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Check every hash, that no teacher is reachable or inside, and re-run the per-capability gate in a fresh process."""
    from nexa.bundle.verify import verify_bundle

    if not (bundle / "manifest.json").exists():
        raise typer.BadParameter(f"{bundle} has no manifest.json; is it a bundle folder?", param_hint="BUNDLE")
    lab = Lab.find(lab_dir)
    with start_run(lab, "verify", config={"bundle": str(bundle), "retain_fraction": retain_fraction}) as run:
        report = verify_bundle(bundle, retain_fraction, forbidden=[str(p) for p in teacher])
        run.update(eval_status="done", eval_report=str(bundle / "verify_report.json"),
                   eval_summary={f"retention/{c}": r for c, r in report["retention"].items()})
    if not json_out:
        console.print(table(f"verify {bundle.name}: {'PASSED' if report['passed'] else 'FAILED'}",
                            ["capability", "teacher", "student", "retention"],
                            [(c, report["teacher_scores"][c], report["student_scores"].get(c), r) for c, r in report["retention"].items()]))
    emit_result({"run_id": run.run_id, "status": "succeeded" if report["passed"] else "failed", "passed": report["passed"],
                 "retention": report["retention"], "verify_report": str(bundle / "verify_report.json"),
                 "outputs": [{"path": str(bundle / "verify_report.json"), "sha256": sha256_file(bundle / "verify_report.json")}]},
                json_out)
    if not report["passed"]:
        raise typer.Exit(1)

"""Pipeline stages of the bundle layer: build the Nexus-layout bundle, then verify it teacher-free."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nexa.bundle.build import (
    bundle_size_bytes,
    model_card,
    quantize_int8,
    write_backbone,
    write_benchmark,
    write_manifest,
    write_tokenizer,
)
from nexa.bundle.verify import GateFailedError, verify_bundle
from nexa.ledger.datasets import read_split


def build(ctx, name: str = "nexus_bundle_v1", student: str = "student_kd", router: str = "router",
          tokenizer: str = "tokenizer", eval: str = "eval", data: str = "data", max_new_tokens: int = 8) -> dict:
    """Assemble backbone, adapters, router, tokenizer and the benchmark with a manifest and a model card."""
    bundle = ctx.out / name
    config = write_backbone(ctx.input(student) / "model", bundle)
    adapters = _copy_adapters(ctx.input(student), bundle)
    router_dir = ctx.input(router)
    shutil.copytree(router_dir / "router", bundle / "router")
    write_tokenizer(ctx.input(tokenizer) / "tokenizer.json", bundle)
    capabilities = json.loads((router_dir / "router.json").read_text())["capabilities"]
    scores = ctx.summary_of(eval)["scores"]
    items = [{"prompt": r["prompt"], "answer": r["answer"], "capability": r["capability"], "max_new_tokens": max_new_tokens}
             for r in read_split(ctx.lab, ctx.input(data) / "datasets.json", "eval")]
    write_benchmark(bundle, items, scores["teacher"])
    summary = ctx.summary_of(student)
    lineage = {"model_sha256": summary["model_sha256"], "run_id": ctx.run.run_id, "pipeline": ctx.pipeline}
    (bundle / "README.md").write_text(model_card(name, capabilities, scores.get(student, {}), summary["parameters"], lineage))
    manifest = write_manifest(
        bundle, name=name, version="1.0.0", format="nexus-bundle", capabilities=capabilities, adapters=adapters,
        safety={"uncensored": False}, generation={"max_new_tokens": max_new_tokens}, backbone=config,
        student_scores=scores.get(student, {}), teacher_scores=scores["teacher"], retention={}, built_by=ctx.run.run_id,
    )
    ctx.run.update(student_model=f"{name}:{summary['model_sha256'][:12]}", best_checkpoint=f"{name}/backbone/backbone.safetensors")
    return {"bundle": name, "files": len(manifest["files"]), "size_bytes": bundle_size_bytes(bundle), "capabilities": capabilities}


def _copy_adapters(student_dir: Path, bundle: Path) -> dict[str, str]:
    """Per-capability adapters the student stage wrote (``adapters/<capability>.safetensors``), if any."""
    (bundle / "adapters").mkdir(parents=True, exist_ok=True)
    adapters = {}
    for file in sorted((student_dir / "adapters").glob("*.safetensors")):
        shutil.copyfile(file, bundle / "adapters" / file.name)
        adapters[file.stem] = f"adapters/{file.name}"
    return adapters


def verify(ctx, bundle: str = "bundle", teacher: str = "teacher", retain_fraction: float = 0.97,
           delete_teacher: bool = True, quantized: bool = False) -> dict:
    """Delete the teacher's weights, then benchmark the bundle alone in a fresh process and gate it.

    With ``quantized``, an int8 copy is verified too and both sizes are reported; the float bundle
    stays the pipeline's bundle.
    """
    name = ctx.summary_of(bundle)["bundle"]
    target = ctx.out / "bundle"
    shutil.copytree(ctx.input(bundle) / name, target)
    teacher_weights = sorted((ctx.input(teacher) / "model").glob("*.safetensors"))
    forbidden = [str(p) for p in teacher_weights]
    tensors_before_delete = teacher_weights if teacher_weights else []
    from nexa.bundle.verify import teacher_tensors_inside

    copied = teacher_tensors_inside(target, tensors_before_delete)
    if delete_teacher and teacher_weights:
        ctx.prune_input(teacher, [f"model/{p.name}" for p in teacher_weights])
    report = verify_bundle(target, retain_fraction, forbidden=forbidden)
    report["checks"]["teacher_tensors_inside"] = copied
    report["checks"]["teacher_weights_deleted"] = bool(delete_teacher) and not any(p.exists() for p in teacher_weights)
    report["passed"] = report["passed"] and not copied
    (target / "verify_report.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    write_manifest(target, retention=report["retention"], verified=report["passed"])
    summary = {"retention": report["retention"], "passed": report["passed"], "student_scores": report["student_scores"],
               "teacher_scores": report["teacher_scores"], "size_bytes": bundle_size_bytes(target)}
    if quantized:
        summary["int8"] = _verify_int8(ctx, target, retain_fraction, forbidden)
    ctx.run.update(eval_status="done", eval_summary={f"retention/{c}": r for c, r in report["retention"].items()},
                   eval_report=str(target / "verify_report.json"))
    if not report["passed"]:
        ctx.lab.durable().put_bytes(f"reports/verify-{ctx.run.run_id}.json", json.dumps(report, indent=2).encode())
        raise GateFailedError(
            f"retention gate failed for {report['failing'] or 'checks'}: retention {report['retention']}, required ≥ "
            f"{retain_fraction}; checks {report['checks']}. Report: reports/verify-{ctx.run.run_id}.json in durable storage"
        )
    return summary


def _verify_int8(ctx, bundle: Path, retain_fraction: float, forbidden: list[str]) -> dict:
    quantized = ctx.out / "bundle-int8"
    shutil.copytree(bundle, quantized)
    sizes = quantize_int8(quantized)
    write_manifest(quantized, quantization="int8-rowwise")
    report = verify_bundle(quantized, retain_fraction, forbidden=forbidden)
    return {**sizes, "retention": report["retention"], "passed": report["passed"]}

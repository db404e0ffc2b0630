"""Pipeline stages of the bundle layer: build the Nexus-layout bundle, then verify it teacher-free."""

from __future__ import annotations

import json
import shutil

from nexa.bundle.build import bundle_size_bytes, model_card, write_backbone, write_manifest, write_tokenizer
from nexa.bundle.verify import GateFailedError, build_report, check_hashes, run_isolated_benchmark, teacher_tensors_inside
from nexa.ledger.datasets import read_split


def build(ctx, name: str = "nexus_bundle_v1", student: str = "student_kd", router: str = "router",
          tokenizer: str = "tokenizer", eval: str = "eval") -> dict:
    """Assemble backbone, adapters, router and tokenizer with a manifest and a model card."""
    bundle = ctx.out / name
    config = write_backbone(ctx.input(student) / "model", bundle)
    (bundle / "adapters").mkdir(parents=True, exist_ok=True)
    router_dir = ctx.input(router)
    shutil.copytree(router_dir / "router", bundle / "router")
    write_tokenizer(ctx.input(tokenizer) / "tokenizer.json", bundle)
    capabilities = json.loads((router_dir / "router.json").read_text())["capabilities"]
    scores = ctx.summary_of(eval)["scores"].get(student, {})
    teacher_scores = next(iter(v for k, v in ctx.summary_of(eval)["scores"].items() if k == "teacher"), {})
    summary = ctx.summary_of(student)
    (bundle / "README.md").write_text(model_card(name, capabilities, scores, summary["parameters"],
                                                 {"model_sha256": summary["model_sha256"], "run_id": ctx.run.run_id, "pipeline": ctx.pipeline}))
    manifest = write_manifest(
        bundle, name=name, version="1.0.0", format="nexus-bundle", capabilities=capabilities, adapters={},
        safety={"uncensored": False}, generation={"max_new_tokens": 8}, backbone=config,
        student_scores=scores, teacher_scores=teacher_scores, retention={}, built_by=ctx.run.run_id,
    )
    ctx.run.update(student_model=f"{name}:{summary['model_sha256'][:12]}", best_checkpoint=f"{name}/backbone/backbone.safetensors")
    return {"bundle": name, "files": len(manifest["files"]), "size_bytes": bundle_size_bytes(bundle), "capabilities": capabilities}


def verify(ctx, bundle: str = "bundle", eval: str = "eval", teacher: str = "teacher", data: str = "data",
           retain_fraction: float = 0.97, delete_teacher: bool = True, max_new_tokens: int = 8) -> dict:
    """Delete the teacher's weights, then benchmark the bundle alone in a fresh process and gate it."""
    name = ctx.summary_of(bundle)["bundle"]
    target = ctx.out / "bundle"
    shutil.copytree(ctx.input(bundle) / name, target)
    teacher_weights = sorted((ctx.input(teacher) / "model").glob("*.safetensors"))
    checks = {"hash_mismatches": check_hashes(target),
              "teacher_tensors_inside": teacher_tensors_inside(target, teacher_weights) if teacher_weights else []}
    forbidden = [str(p) for p in teacher_weights]
    if delete_teacher and teacher_weights:
        ctx.prune_input(teacher, [f"model/{p.name}" for p in teacher_weights])
    checks["teacher_weights_deleted"] = delete_teacher and not any(p.exists() for p in teacher_weights)
    items = _benchmark_items(ctx, data, max_new_tokens)
    child = run_isolated_benchmark(target, items, forbidden)
    teacher_scores = ctx.summary_of(eval)["scores"]["teacher"]
    report = build_report(target, teacher_scores, child, retain_fraction, checks, attempts=[])
    report["attempts"] = [{"attempt": 1, "retention": report["retention"], "passed": report["passed"]}]
    (target / "verify_report.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    write_manifest(target, retention=report["retention"], verified=report["passed"])
    ctx.run.update(eval_status="done", eval_summary={f"retention/{c}": r for c, r in report["retention"].items()},
                   eval_report=str(target / "verify_report.json"))
    if not report["passed"]:
        ctx.lab.durable().put_bytes(f"reports/verify-{ctx.run.run_id}.json", json.dumps(report, indent=2).encode())
        raise GateFailedError(
            f"retention gate failed for {report['failing'] or 'checks'}: retention {report['retention']}, "
            f"required ≥ {retain_fraction}; checks {checks}. Report: reports/verify-{ctx.run.run_id}.json in durable storage"
        )
    return {"retention": report["retention"], "passed": True, "student_scores": report["student_scores"],
            "teacher_scores": teacher_scores, "size_bytes": sum(p.stat().st_size for p in target.rglob("*") if p.is_file())}


def _benchmark_items(ctx, data: str, max_new_tokens: int) -> list[dict]:
    rows = read_split(ctx.lab, ctx.input(data) / "datasets.json", "eval")
    return [{"prompt": r["prompt"], "answer": r["answer"], "capability": r["capability"], "max_new_tokens": max_new_tokens}
            for r in rows]

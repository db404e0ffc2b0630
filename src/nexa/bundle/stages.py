"""Pipeline stages of the bundle layer: build the Nexus-layout bundle, then verify it teacher-free."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nexa.bundle.build import assemble_bundle, benchmark_items, bundle_size_bytes, quantize_int8, write_manifest
from nexa.bundle.verify import GateFailedError, verify_bundle
from nexa.ledger.datasets import read_split
from nexa.ledger.retention import DEFAULT_TEACHER_FLOOR


def build(ctx, name: str = "nexus_bundle_v1", student: str = "student_kd", router: str = "router",
          tokenizer: str = "tokenizer", eval: str = "eval", data: str = "data", max_new_tokens: int = 8,
          allow_uncensored: bool = False, registry: str | None = None, teacher_name: str | None = None) -> dict:
    """Assemble backbone, the student's adapters, router, tokenizer and the benchmark with a manifest and a model card.

    The gate measures each capability by the registry's metric: a NIWT student carries them from its profile;
    any other student gets them from ``registry`` (a teacher-registry stage; ``teacher_name`` when it lists
    several), else exact match.
    """
    from nexa.ledger.listings import registry_metrics

    bundle = ctx.out / name
    scores = ctx.summary_of(eval)["scores"]
    items = benchmark_items(read_split(ctx.lab, ctx.input(data) / "datasets.json", "eval"), max_new_tokens)
    summary = ctx.summary_of(student)
    manifest = assemble_bundle(
        bundle, name=name, model_dir=ctx.input(student) / "model", tokenizer_file=ctx.input(tokenizer) / "tokenizer.json",
        router_dir=ctx.input(router), adapters_dir=ctx.input(student) / "adapters", items=items,
        teacher_scores=scores["teacher"], student_scores=scores.get(student, {}),
        lineage={"model_sha256": summary["model_sha256"], "run_id": ctx.run.run_id, "pipeline": ctx.pipeline},
        max_new_tokens=max_new_tokens, allow_uncensored=allow_uncensored, built_by=ctx.run.run_id,
        training_gate_attempts=[{"stage": student, **a} for a in summary.get("gate_attempts", [])],
        metrics=summary.get("metrics") or (registry_metrics(ctx.input(registry) / "teacher_registry.json", teacher_name)
                                           if registry else None),
    )
    ctx.run.update(student_model=f"{name}:{summary['model_sha256'][:12]}", best_checkpoint=f"{name}/backbone/model.safetensors")
    return {"bundle": name, "files": len(manifest["files"]), "size_bytes": bundle_size_bytes(bundle),
            "capabilities": manifest["capabilities"], "adapters": sorted(manifest["adapters"]), "parameters": manifest["parameters"]}


def verify(ctx, bundle: str = "bundle", teacher: str = "teacher", retain_fraction: float | None = None,
           delete_teacher: bool = True, quantized: bool = False, teacher_floor: float = DEFAULT_TEACHER_FLOOR,
           judge: dict | None = None, include_path: str | None = None) -> dict:
    """Delete the teacher's weights, then benchmark the bundle alone in a fresh process and gate it.

    ``retain_fraction`` defaults to the lab's (``nexa.yaml``), the one default every gate shares; a teacher
    scoring below ``teacher_floor`` fails the gate (retention against it would pass by division).

    With ``quantized``, an int8 copy is verified too and both sizes are reported; the float bundle
    stays the pipeline's bundle. ``judge`` ({url, model[, rubric_dir, budget_usd]}) and ``include_path`` (lm-eval
    task YAMLs) serve capabilities whose registry metric is ``judge:RUBRIC`` or ``lm_eval:METRIC``.
    """
    from nexa.eval.gate_metrics import gate_scoring

    scoring = gate_scoring(ctx, judge, include_path)
    retain_fraction = ctx.lab.config.retain_fraction if retain_fraction is None else retain_fraction
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
    earlier = json.loads((target / "manifest.json").read_text()).get("training_gate_attempts", [])
    report = verify_bundle(target, retain_fraction, forbidden=forbidden, attempts=earlier, teacher_floor=teacher_floor,
                           scoring=scoring)
    report["checks"]["teacher_tensors_inside"] = copied
    report["checks"]["teacher_weights_deleted"] = bool(delete_teacher) and not any(p.exists() for p in teacher_weights)
    report["passed"] = report["passed"] and not copied
    (target / "verify_report.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    write_manifest(target, retention=report["retention"], verified=report["passed"])
    summary = {"retention": report["retention"], "passed": report["passed"], "student_scores": report["student_scores"],
               "teacher_scores": report["teacher_scores"], "size_bytes": bundle_size_bytes(target)}
    if quantized:
        summary["int8"] = _verify_int8(ctx, target, retain_fraction, forbidden, teacher_floor, scoring)
    scoring.close()
    summary["cost_usd"] = round(scoring.judge_spent_usd, 6)  # the judge's new calls (cached verdicts cost nothing)
    ctx.run.update(eval_status="done", eval_summary={f"retention/{c}": r for c, r in report["retention"].items()},
                   eval_report=str(target / "verify_report.json"))
    if not report["passed"]:
        ctx.lab.durable().put_bytes(f"reports/verify-{ctx.run.run_id}.json", json.dumps(report, indent=2).encode())
        raise GateFailedError(
            f"retention gate failed for {report.get('failure_reasons') or 'checks'}: retention {report['retention']}, required ≥ "
            f"{retain_fraction}; checks {report['checks']}. Report: reports/verify-{ctx.run.run_id}.json in durable storage"
        )
    return summary


def _verify_int8(ctx, bundle: Path, retain_fraction: float, forbidden: list[str], teacher_floor: float, scoring=None) -> dict:
    quantized = ctx.out / "bundle-int8"
    shutil.copytree(bundle, quantized)
    sizes = quantize_int8(quantized)
    write_manifest(quantized, quantization="int8-rowwise")
    report = verify_bundle(quantized, retain_fraction, forbidden=forbidden, teacher_floor=teacher_floor, scoring=scoring)
    return {**sizes, "retention": report["retention"], "passed": report["passed"]}

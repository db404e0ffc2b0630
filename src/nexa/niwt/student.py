"""The NIWT student stage end to end: anchored distillation (stage 4) and the hard retention gate (stage 5).

Inputs are artifacts only — the profile, the synthesized backbone and plan, the materialized teacher
answers and the router — so the teacher is never in memory here. Outputs: ``model/`` (the backbone as
an HF checkpoint, and also a runnable ``nexus`` layout with the adapters and router so the eval layer
scores the student exactly as the bundle runs it), ``adapters/<capability>.safetensors`` in the bundle's
adapter format, and ``gate_report.json`` with every gate attempt.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from rich.progress import TextColumn
from safetensors.torch import load_file
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

from nexa.ledger.console import console, progress, table
from nexa.ledger.datasets import read_dataset_rows, read_split
from nexa.ledger.hashing import sha256_file
from nexa.ledger.listings import read_paired
from nexa.ledger.retention import DEFAULT_TEACHER_FLOOR, gate_failures, retention
from nexa.niwt.distill import (AnchoredDistiller, DistillConfig, attach_adapters, backbone_state, build_anchors,
                               export_adapters, gate_scores)
from nexa.niwt.profile import read_profile_manifest


class NiwtGateError(RuntimeError):
    """The student kept less than retain_fraction of the teacher on some capability after every allowed retry."""


def load_inputs(ctx, profile: str, synthesize: str, distill: str, data: str):
    """Profiles (manifest + tensors + samples), the synthesis plan, training rows and benchmark rows."""
    teacher_name = ctx.summary_of(profile)["teacher"]
    folder = ctx.input(profile) / "profiles" / teacher_name
    profiles = {}
    for capability in sorted(ctx.summary_of(profile)["capabilities"]):
        cap = folder / capability
        profiles[capability] = (read_profile_manifest(cap).model_dump(mode="json"), load_file(str(cap / "profile.safetensors")),
                                _jsonl(cap / "samples.jsonl"), _jsonl(cap / "raw_outputs.jsonl"))
    basis = load_file(str(folder / "residual.safetensors"))["basis"].float()
    plan = json.loads((ctx.input(synthesize) / "synthesis.json").read_text())
    paired = read_dataset_rows(ctx.lab, read_paired(ctx.input(distill) / "dataset.json").ref)
    eval_rows = read_split(ctx.lab, ctx.input(data) / "datasets.json", "eval")
    return teacher_name, profiles, basis, plan, paired, eval_rows


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def training_rows(paired: list[dict], profiles: dict) -> dict[str, list[tuple[str, str]]]:
    """Materialized (prompt, teacher answer) pairs per capability, minus the held-back verification prompts."""
    held_back = {r["prompt"] for _, _, _, raw in profiles.values() for r in raw}
    rows: dict[str, list[tuple[str, str]]] = {}
    for row in paired:
        if row["prompt"] not in held_back:
            rows.setdefault(row["capability"], []).append((row["prompt"], row["answer"]))
    return rows


def make_distiller(student, tokenizer, profiles, basis, plan, paired, config: DistillConfig, seed: int) -> AnchoredDistiller:
    """PEFT adapters on the student, anchors mapped to its layers/heads, the projection into teacher width."""
    transfer = plan.get("transfer") or {}
    teacher_layers = transfer.get("layers") or list(range(student.config.num_hidden_layers))
    layer_map = {t: s for s, t in enumerate(teacher_layers)}
    head_map = {int(k): v for k, v in (transfer.get("heads") or {}).items()}
    anchors = {cap: build_anchors(p, {k: v.float() for k, v in t.items()}, samples, raw, layer_map, head_map,
                                  student.config.num_attention_heads)
               for cap, (p, t, samples, raw) in profiles.items()}
    import torch

    torch.manual_seed(seed)  # LoRA's A matrices come from torch's global RNG, whose state otherwise depends on
    # which stages ran (or were cached) earlier in this process: two runs of one lab diverged that way
    model = attach_adapters(student, plan["adapters"])
    projection = basis[: student.config.hidden_size]  # student hidden -> teacher hidden: h_s @ U
    return AnchoredDistiller(model, tokenizer, training_rows(paired, profiles), anchors, projection, config, seed)


def retrain_failing(distiller: AnchoredDistiller, failing: list[str], steps: int, on_step=None) -> None:
    """A gate retry: stronger anchoring for each capability that failed, then its adapter alone for ``steps`` steps."""
    for capability in failing:
        distiller.strengthen_anchor(capability)
    distiller.run_phase(steps, backbone=False, capabilities=failing, on_step=on_step)


def run_gate(distiller: AnchoredDistiller, eval_rows, route, teacher_scores, retain: dict[str, float], steps: int,
             retried: list[str], max_new_tokens: int, contracts: dict[str, dict] | None = None,
             teacher_floor: float = DEFAULT_TEACHER_FLOOR, scoring=None) -> dict:
    student_scores = gate_scores(distiller.model, distiller.tokenizer, eval_rows, route, max_new_tokens, contracts, scoring)
    kept = retention(student_scores, teacher_scores)
    reasons = gate_failures(kept, retain, teacher_scores, teacher_floor)
    return {"student_scores": student_scores, "teacher_scores": teacher_scores, "retention": kept, "failing": sorted(reasons),
            "reasons": reasons, "passed": not reasons, "steps": steps, "retrained": retried, "teacher_loaded": False}


def gated_distillation(ctx, profile, synthesize, distill, data, router, config: dict, max_attempts: int,
                       retry_steps: int) -> dict:
    from nexus.router import Router

    settings = DistillConfig.model_validate(config)
    teacher_name, profiles, basis, plan, paired, eval_rows = load_inputs(ctx, profile, synthesize, distill, data)
    student = AutoModelForCausalLM.from_pretrained(ctx.input(synthesize) / "model", attn_implementation="eager")
    tokenizer = Tokenizer.from_file(str(ctx.input(synthesize) / "model" / "tokenizer.json"))
    distiller = make_distiller(student, tokenizer, profiles, basis, plan, paired, settings, ctx.seed)
    route = Router.load(ctx.input(router) / "router" / "router.safetensors").choose
    teacher_scores = ctx.summary_of(profile)["teacher_scores"]
    retain = {c: p[0]["retain_fraction"] for c, p in profiles.items()}
    from nexa.eval.gate_metrics import check_scoring, gate_scoring

    contracts = {c: {"metric": p[0].get("metric", "exact_match"), "benchmark": p[0].get("benchmark", c)} for c, p in profiles.items()}
    scoring = gate_scoring(ctx, settings.judge, settings.include_path)
    check_scoring({c: k["metric"] for c, k in contracts.items()}, scoring)  # before any training step
    bar = progress(True, TextColumn("loss {task.fields[loss]:.4f}"))
    with bar:
        task = bar.add_task("NIWT phase 1 (adapters)", total=settings.phase1_steps, loss=float("nan"))
        distiller.run_phase(settings.phase1_steps, backbone=False, progress=bar, task=task)
        task = bar.add_task("NIWT phase 2 (joint)", total=settings.phase2_steps, loss=float("nan"))
        distiller.run_phase(settings.phase2_steps, backbone=True, progress=bar, task=task)
    attempts = [{"attempt": 1, **run_gate(distiller, eval_rows, route, teacher_scores, retain, distiller.state.step, [],
                                          settings.max_new_tokens, contracts, settings.teacher_floor, scoring)}]
    while not attempts[-1]["passed"] and len(attempts) < max_attempts:
        failing = attempts[-1]["failing"]
        retrain_failing(distiller, failing, retry_steps)
        attempts.append({"attempt": len(attempts) + 1, **run_gate(distiller, eval_rows, route, teacher_scores, retain,
                                                                   distiller.state.step, failing, settings.max_new_tokens,
                                                                   contracts, settings.teacher_floor, scoring)})
    write_outputs(ctx, distiller, plan, tokenizer, attempts, ctx.input(router))
    final = attempts[-1]
    _show(attempts)
    if not final["passed"]:
        raise NiwtGateError(f"NIWT gate failed for {final['reasons']} after {len(attempts)} attempts: retention "
                            f"{final['retention']}, required {retain}; see gate_report.json in this stage's output")
    ctx.run.update(teacher_model=teacher_name, eval_status="done",
                   eval_summary={f"retention/{c}": r for c, r in final["retention"].items()})
    return {"model_sha256": sha256_file(ctx.out / "model" / "model.safetensors"),
            "parameters": sum(p.numel() for p in distiller.model.parameters()),
            "steps": distiller.state.step, "gate": final, "gate_attempts": attempts, "alpha": distiller.state.alpha,
            "recoveries": distiller.state.recoveries, "checks": distiller.state.checks, "loss_curve": distiller.state.losses,
            "adapters": {c: a["rank"] for c, a in plan["adapters"].items()},
            "metrics": contracts}  # the registry's metric and benchmark per capability: the bundle's gate uses them


def write_outputs(ctx, distiller: AnchoredDistiller, plan: dict, tokenizer: Tokenizer, attempts: list[dict],
                  router_dir: Path) -> None:
    """Backbone (HF), adapters (bundle format), the runnable nexus layout of both, and the gate report."""
    base = distiller.model.get_base_model()
    clean = AutoModelForCausalLM.from_config(base.config)
    clean.load_state_dict(backbone_state(distiller.model), strict=False)
    clean.tie_weights()
    model_dir = ctx.out / "model"
    clean.save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save(str(model_dir / "tokenizer.json"))
    export_adapters(distiller.model, plan["adapters"], ctx.out / "adapters")
    write_runtime_layout(model_dir, ctx.out / "adapters", router_dir, sorted(plan["adapters"]))
    (ctx.out / "gate_report.json").write_text(json.dumps({"schema_version": 1, "attempts": attempts}, indent=2, sort_keys=True))


def write_runtime_layout(model_dir: Path, adapters_dir: Path, router_dir: Path, capabilities: list[str],
                         max_new_tokens: int = 8) -> dict:
    """Make ``model_dir`` loadable by ``nexus.NexusModel`` too (backbone/, adapters/, router/, tokenizer/, manifest).

    The bundle's file-format writers are reused (they are the format's one definition); the HF files stay
    beside them for the bundle stage, and the manifest hashes every file so the runtime verifies them all.
    """
    from nexa.bundle.build import write_backbone, write_manifest, write_tokenizer

    write_backbone(model_dir, model_dir)
    (model_dir / "adapters").mkdir(exist_ok=True)
    adapters = {}
    for file in sorted(adapters_dir.glob("*.safetensors")):
        shutil.copyfile(file, model_dir / "adapters" / file.name)
        adapters[file.stem] = f"adapters/{file.name}"
    shutil.copytree(router_dir / "router", model_dir / "router", dirs_exist_ok=True)
    write_tokenizer(model_dir / "tokenizer.json", model_dir)
    (model_dir / "bundle.json").write_text(json.dumps({"format": "nexus-bundle", "manifest": "manifest.json",
                                                       "note": "NIWT student before packaging"}, indent=2))
    return write_manifest(model_dir, name="niwt-student", version="0.0.0", format="nexus-bundle", capabilities=capabilities,
                          adapters=adapters, safety={"uncensored": False}, generation={"max_new_tokens": max_new_tokens})


def _show(attempts: list[dict]) -> None:
    rows = [(a["attempt"], c, round(a["student_scores"].get(c, 0.0), 4), round(a["teacher_scores"][c], 4),
             round(a["retention"][c], 4), "pass" if c not in a["failing"] else "FAIL")
            for a in attempts for c in sorted(a["retention"])]
    console.print(table("NIWT retention gate", ["attempt", "capability", "student", "teacher", "retention", "gate"], rows))

"""Pipeline stages of the NIWT layer: registry, router, profile, synthesize and the anchored, gated student."""

from __future__ import annotations

import csv
import json

from safetensors.torch import load_file, save_file

from nexa.ledger.console import console, table
from nexa.ledger.datasets import read_dataset_rows, read_split
from nexa.ledger.listings import TeacherProfile, read_paired, write_contract
from nexa.niwt.router import DEFAULT_FEATURIZER, router_accuracy, train_router, write_router
from nexa.train.tokenizer import copy_tokenizer_files


def router(ctx, data: str = "data", epochs: int = 200) -> dict:
    """Train the router on capability-labelled training prompts; report held-out accuracy."""
    listing = ctx.input(data) / "datasets.json"
    train, held_out = read_split(ctx.lab, listing, "train"), read_split(ctx.lab, listing, "eval")
    capabilities = sorted({r["capability"] for r in train})
    n_buckets, ngram_max = DEFAULT_FEATURIZER["n_buckets"], DEFAULT_FEATURIZER["ngram_max"]
    weight, bias = train_router([r["prompt"] for r in train], [r["capability"] for r in train], capabilities,
                                ctx.seed, n_buckets, ngram_max, epochs)
    write_router(ctx.out, weight, bias, capabilities, DEFAULT_FEATURIZER)
    accuracy = router_accuracy(weight, bias, [r["prompt"] for r in held_out], [r["capability"] for r in held_out],
                               capabilities, n_buckets, ngram_max)
    (ctx.out / "router.json").write_text(json.dumps({"capabilities": capabilities, "held_out_accuracy": accuracy}, indent=2))
    return {"capabilities": capabilities, "held_out_accuracy": accuracy}


# -- stage 1 ----------------------------------------------------------------------------------------
def teacher_registry(ctx, teachers: list[dict], default_retain: float | None = None) -> dict:
    """Write the pipeline's teacher CSV rows as ``teachers.csv`` and build ``teacher_registry.json`` from it.

    A capability without its own retain fraction gets ``default_retain``, else the lab's (``nexa.yaml``).
    """
    from nexa.niwt.registry import REQUIRED_COLUMNS, build_registry

    columns = list(REQUIRED_COLUMNS) + sorted({k for row in teachers for k in row} - set(REQUIRED_COLUMNS))
    with open(ctx.out / "teachers.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(teachers)
    default = ctx.lab.config.retain_fraction if default_retain is None else default_retain
    registry, quarantined = build_registry(ctx.out / "teachers.csv", ctx.out / "teacher_registry.json", default)
    return {"teachers": [t.name for t in registry.teachers], "quarantined": len(quarantined)}


# -- stage 2 ----------------------------------------------------------------------------------------
def profile(ctx, teacher: str = "teacher", distill: str = "distill", data: str = "data",
            registry: str | None = "teacher_registry", teacher_name: str = "golden-teacher",
            config: dict | None = None, max_new_tokens: int = 8, judge: dict | None = None,
            include_path: str | None = None) -> dict:
    """Profile the teacher per capability into ``profiles/<teacher>/<capability>/`` (no raw activations).

    The teacher is scored by each capability's registry metric; ``judge`` ({url, model[, rubric_dir,
    budget_usd]}) and ``include_path`` (lm-eval task YAMLs) serve ``judge:RUBRIC`` and ``lm_eval:METRIC``."""
    from tokenizers import Tokenizer

    from nexa.niwt.profile import (ProfileConfig, assert_no_token_tensors, batches, folder_bytes, load_teacher,
                                   profile_capability, residual_basis, select_samples, teacher_scores)

    settings = ProfileConfig.model_validate(config or {})
    paired = read_dataset_rows(ctx.lab, read_paired(ctx.input(distill) / "dataset.json").ref)
    eval_rows = read_split(ctx.lab, ctx.input(data) / "datasets.json", "eval")
    contracts = _contracts(ctx, registry, teacher_name, sorted({r["capability"] for r in eval_rows}))
    model, precision = load_teacher(ctx.input(teacher) / "model", settings.quantize)
    tokenizer = Tokenizer.from_file(str(ctx.input(teacher) / "model" / "tokenizer.json"))
    from nexa.eval.gate_metrics import gate_scoring

    scoring = gate_scoring(ctx, judge, include_path)
    scores = teacher_scores(model, tokenizer, eval_rows, max_new_tokens, contracts, scoring)
    out = ctx.out / "profiles" / teacher_name
    manifests, everything = {}, []
    for capability in sorted(contracts):
        samples, raw = select_samples(paired, capability, settings.samples, ctx.seed)
        everything += samples
        manifests[capability] = profile_capability(model, tokenizer, teacher_name, capability, samples, raw, settings,
                                                   contracts[capability], scores[capability], out)
    eos, pad = model.config.eos_token_id, model.config.pad_token_id
    data_batches = batches(tokenizer, [(r["prompt"], r["answer"]) for r in everything], eos, pad, settings.batch_size)
    basis, variance = residual_basis(model, data_batches, min(settings.residual_components, model.config.hidden_size))
    save_file({"basis": basis.half().contiguous(), "variance_ratio": variance}, str(out / "residual.safetensors"),
              metadata={"teacher": teacher_name, "kind": "uncentred residual-stream principal directions"})
    token_counts = {m.answer_tokens for m in manifests.values()} | {int(b.attention_mask.sum()) for b in data_batches}
    assert_no_token_tensors(out, token_counts, model.config.hidden_size)
    raw_bytes = sum(m.raw_activation_bytes for m in manifests.values())
    summary = {"teacher": teacher_name, "precision": precision, "teacher_scores": scores,
               "capabilities": {c: {"key_layers": m.key_layers, "samples": m.samples, "bytes": m.bytes_written,
                                    "fraction_of_raw": m.fraction_of_raw,
                                    "layer_drop": m.layer_drop} for c, m in manifests.items()},
               "bytes_written": folder_bytes(out), "raw_activation_bytes": raw_bytes,
               "fraction_of_raw": round(folder_bytes(out) / raw_bytes, 6),
               "residual_variance_kept": round(float(variance.sum()), 6)}
    write_contract(out / "profile.json", TeacherProfile.model_validate(summary))
    ctx.run.update(teacher_model=teacher_name)
    (ctx.out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    console.print(table(f"NIWT profile of {teacher_name}", ["capability", "teacher score", "key layers", "profile KB", "of raw"],
                        [(c, round(scores[c], 4), m.key_layers, round(m.bytes_written / 1024, 1), f"{m.fraction_of_raw:.1%}")
                         for c, m in manifests.items()]))
    return summary


def _contracts(ctx, registry: str | None, teacher_name: str, capabilities: list[str]) -> dict[str, dict]:
    """Benchmark, metric and retain fraction per capability: from the registry stage, else the lab's defaults."""
    if registry is None:
        retain = ctx.lab.config.retain_fraction
        return {c: {"benchmark": f"{c}-eval", "metric": "exact_match", "retain_fraction": retain} for c in capabilities}
    from nexa.niwt.registry import load_registry

    entry = load_registry(ctx.input(registry) / "teacher_registry.json").teacher(teacher_name)
    contracts = {c.name: c.model_dump() for c in entry.capabilities}
    missing = sorted(set(capabilities) - set(contracts))
    if missing:
        raise ValueError(f"teacher {teacher_name!r} in the registry lacks capabilities {missing} that the data has; "
                         f"add them to its BestFeature column")
    return {c: contracts[c] for c in capabilities}


# -- stage 3 ----------------------------------------------------------------------------------------
def synthesize(ctx, teacher: str = "teacher", profile: str = "profile", arch: dict | None = None) -> dict:
    """Build the student backbone (transferred or fresh) and its adapter plan from the profile."""
    from transformers import AutoModelForCausalLM

    from nexa.niwt.profile import read_profile_manifest
    from nexa.niwt.synthesis import StudentArch, synthesize as build

    settings = StudentArch.model_validate(arch or {})
    teacher_name = ctx.summary_of(profile)["teacher"]
    folder = ctx.input(profile) / "profiles" / teacher_name
    profiles = {c: read_profile_manifest(folder / c).model_dump(mode="json") for c in ctx.summary_of(profile)["capabilities"]}
    basis = load_file(str(folder / "residual.safetensors"))["basis"].float()
    teacher_model = AutoModelForCausalLM.from_pretrained(ctx.input(teacher) / "model")  # its own family
    student, plan = build(teacher_model, settings, profiles, basis, ctx.seed)
    student.save_pretrained(ctx.out / "model", safe_serialization=True)
    copy_tokenizer_files(ctx.input(teacher) / "model", ctx.out / "model")  # with its special tokens and chat template
    (ctx.out / "student_arch.json").write_text(settings.model_dump_json(indent=2))
    (ctx.out / "synthesis.json").write_text(json.dumps(plan, indent=2, sort_keys=True))
    console.print(table("NIWT student adapters", ["capability", "rank", "alpha", "from teacher layer"],
                        [(c, a["rank"], a["alpha"], a["from_layer"]) for c, a in plan["adapters"].items()]))
    summary = {"param_ratio": plan["param_ratio"], "init": plan["init"], "transfer": plan.get("transfer", {}),
               "adapters": {c: a["rank"] for c, a in plan["adapters"].items()}}
    (ctx.out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    return summary


# -- stages 4 and 5 ---------------------------------------------------------------------------------
def student_niwt(ctx, profile: str = "profile", synthesize: str = "synthesize", distill: str = "distill",
                 data: str = "data", router: str = "router", config: dict | None = None,
                 max_attempts: int = 3, retry_steps: int = 150) -> dict:
    """Anchored distillation from stored profiles and materialized outputs, then the hard retention gate.

    The teacher is not an input of this stage: only its profile and its materialized answers are. The
    gate benchmarks the student alone; a failing capability retrains its own adapter only (backbone
    frozen, stronger anchor), at most ``max_attempts`` gate runs in all, each recorded.
    """
    from nexa.niwt.student import gated_distillation

    return gated_distillation(ctx, profile, synthesize, distill, data, router, config or {}, max_attempts, retry_steps)

"""Building a bundle in the Nexus layout from a trained student, its tokenizer and a trained router.

The layout is the contract with the ``nexus`` runtime (see ``docs/bundle.md``): only safetensors,
a tokenizer folder, and a manifest listing the SHA-256 of every other file. The backbone is a standard
HF folder (``AutoModelForCausalLM.from_pretrained("bundle/backbone")``) and every adapter a PEFT
adapter folder (``PeftModel.from_pretrained(model, "bundle/adapters/<capability>")``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from nexa.ledger.hashing import sha256_file

BUNDLE_VERSION = 1
CONFIG_FIELDS = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_theta", "max_position_embeddings",
                 "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id"]
BACKBONE_WEIGHTS = "backbone/model.safetensors"


class UnsupportedBackboneError(ValueError):
    """A checkpoint the runtime cannot run exactly (family, RoPE variant, ...): refused at bundle time."""


def write_backbone(model_dir: Path, bundle: Path) -> dict[str, Any]:
    """The checkpoint as an HF folder in ``backbone/``: its config.json (plus the resolved fields nexus reads)
    and ``model.safetensors`` (tied head left out, as save_pretrained does). Refuses what nexus cannot run.

    A ``nexa.models`` student (ssm, deq) gets the config its nexus decoder is rebuilt from instead.
    """
    from nexa.models.backbones import backbone_config
    from nexus.llama import unsupported_reason

    hf_config = json.loads((model_dir / "config.json").read_text())
    config = backbone_config(hf_config)
    if config is None:
        hf_config.setdefault("model_type", "llama")
        reason = unsupported_reason(hf_config)
        if reason:
            raise UnsupportedBackboneError(f"{model_dir}: {reason}; this checkpoint cannot be bundled")
        config = {**hf_config, **{k: _config_value(hf_config, k) for k in CONFIG_FIELDS}}
    tensors = load_file(str(model_dir / "model.safetensors"))
    if config["tie_word_embeddings"]:
        tensors.pop("lm_head.weight", None)
    target = bundle / "backbone"
    target.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sorted(tensors.items())}, str(bundle / BACKBONE_WEIGHTS), metadata={"format": "pt"})
    (target / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    if (model_dir / "generation_config.json").is_file():
        shutil.copyfile(model_dir / "generation_config.json", target / "generation_config.json")
    return config


def write_peft_adapter(file: Path, target: Path) -> None:
    """A nexus adapter file (``<module>.lora_A/B`` + rank/alpha metadata) as a PEFT LoRA adapter folder."""
    tensors, metadata = _read_with_metadata(file)
    modules = sorted({name.rsplit(".", 1)[0] for name in tensors})
    target.mkdir(parents=True, exist_ok=True)
    peft_tensors = {f"base_model.model.{name}.weight": t.contiguous() for name, t in sorted(tensors.items())}
    save_file(peft_tensors, str(target / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": int(metadata["rank"]), "lora_alpha": float(metadata["alpha"]),
              "target_modules": modules, "lora_dropout": 0.0, "bias": "none", "base_model_name_or_path": "../../backbone",
              "fan_in_fan_out": False, "inference_mode": True}
    (target / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))


def _config_value(hf_config: dict, key: str):
    if key == "head_dim":
        return hf_config.get("head_dim") or hf_config["hidden_size"] // hf_config["num_attention_heads"]
    if key == "rope_theta":
        return hf_config.get("rope_theta") or (hf_config.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    if key not in hf_config:
        raise KeyError(f"checkpoint config lacks {key!r}; only Llama-style checkpoints can be bundled")
    return hf_config[key]


def write_tokenizer(tokenizer_file: Path, bundle: Path) -> None:
    """The tokenizer folder: tokenizer.json plus its declared special tokens and chat template (AutoTokenizer reads it)."""
    from nexa.train.tokenizer import copy_tokenizer_files

    copy_tokenizer_files(tokenizer_file, bundle / "tokenizer")


def write_manifest(bundle: Path, **fields: Any) -> dict[str, Any]:
    """``manifest.json`` with the hash of every other file; rewritten whenever a file changes."""
    files = {p.relative_to(bundle).as_posix(): sha256_file(p) for p in sorted(bundle.rglob("*"))
             if p.is_file() and p.name != "manifest.json"}
    previous = json.loads((bundle / "manifest.json").read_text()) if (bundle / "manifest.json").exists() else {}
    manifest = {**previous, "schema_version": BUNDLE_VERSION, **fields, "files": files}
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def write_benchmark(bundle: Path, items: list[dict[str, Any]], teacher_scores: dict[str, float],
                    metrics: dict[str, dict[str, Any]] | None = None) -> None:
    """The benchmark travels with the bundle, so `nexa bundle verify` can re-run the gate anywhere; ``metrics``
    ({capability: {"metric", "benchmark"[, "teacher_item_variance"]}}, the registry's) says how each is scored."""
    target = bundle / "benchmark"
    target.mkdir(parents=True, exist_ok=True)
    (target / "items.json").write_text(json.dumps(items, indent=1, sort_keys=True))
    (target / "teacher_scores.json").write_text(json.dumps(teacher_scores, indent=2, sort_keys=True))
    if metrics:
        (target / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))


def quantize_int8(bundle: Path) -> dict[str, int]:
    """Row-wise symmetric int8 for every 2-D weight of the backbone and adapters; returns sizes before/after.

    Each row keeps its own float32 scale (max |w| / 127), which is what keeps small models within a
    fraction of a percent of their float scores; 1-D tensors (norms) stay in float.
    """
    before = bundle_size_bytes(bundle)
    weights = [bundle / BACKBONE_WEIGHTS, *sorted((bundle / "adapters").glob("*.safetensors")),
               *sorted((bundle / "adapters").glob("*/adapter_model.safetensors"))]
    for file in weights:
        tensors, metadata = _read_with_metadata(file)
        out = {}
        for name, tensor in tensors.items():
            if tensor.dim() == 2 and tensor.is_floating_point():
                scale = tensor.abs().amax(dim=1).clamp(min=1e-12) / 127.0
                out[name] = torch.round(tensor / scale[:, None]).clamp(-127, 127).to(torch.int8)
                out[f"{name}.scale"] = scale.to(torch.float32)
            else:
                out[name] = tensor
        save_file({k: v.contiguous() for k, v in sorted(out.items())}, str(file), metadata={**metadata, "quantization": "int8-rowwise"})
    return {"size_bytes_before": before, "size_bytes_after": bundle_size_bytes(bundle)}


def _read_with_metadata(file: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    with safe_open(str(file), "pt") as handle:
        metadata = handle.metadata() or {}
        return {k: handle.get_tensor(k) for k in handle.keys()}, metadata


def benchmark_items(rows: list[dict[str, Any]], max_new_tokens: int) -> list[dict[str, Any]]:
    """The bundle's benchmark: the eval rows (all rows when none is split) with the generation length."""
    return [{"prompt": r["prompt"], "answer": r["answer"], "capability": r["capability"], "max_new_tokens": max_new_tokens}
            for r in rows if r.get("split", "eval") == "eval"]


def bundle_size_bytes(bundle: Path) -> int:
    return sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())


UNCENSORED = "uncensored"


class UnsafeBundleError(ValueError):
    """An uncensored capability was about to be bundled without the explicit opt-in."""


def assemble_bundle(bundle: Path, *, name: str, model_dir: Path, tokenizer_file: Path, router_dir: Path,
                    adapters_dir: Path | None, items: list[dict[str, Any]], teacher_scores: dict[str, float],
                    student_scores: dict[str, float], lineage: dict, max_new_tokens: int,
                    allow_uncensored: bool = False, metrics: dict[str, dict[str, Any]] | None = None,
                    **manifest_fields: Any) -> dict[str, Any]:
    """Everything a bundle holds, in the Nexus layout; the one path both the pipeline stage and the CLI use.

    An ``uncensored`` adapter or router class is refused unless ``allow_uncensored`` is set: that opt-in is
    recorded in the manifest (``safety.uncensored``) and is what the runtime checks before ever using it.
    """
    capabilities = json.loads((router_dir / "router.json").read_text())["capabilities"]
    adapter_files = sorted(adapters_dir.glob("*.safetensors")) if adapters_dir is not None and adapters_dir.is_dir() else []
    if not allow_uncensored and (UNCENSORED in capabilities or any(f.stem == UNCENSORED for f in adapter_files)):
        raise UnsafeBundleError(f"{router_dir} / {adapters_dir}: an '{UNCENSORED}' capability needs the explicit opt-in "
                                "(--allow-uncensored / allow_uncensored: true); standard bundles cannot contain it")
    config = write_backbone(model_dir, bundle)
    (bundle / "adapters").mkdir(parents=True, exist_ok=True)
    adapters = {}
    for file in adapter_files:
        write_peft_adapter(file, bundle / "adapters" / file.stem)
        adapters[file.stem] = f"adapters/{file.stem}"
    shutil.copytree(router_dir / "router", bundle / "router")
    write_tokenizer(tokenizer_file, bundle)
    write_benchmark(bundle, items, teacher_scores, metrics)
    parameters = _parameter_count(bundle)
    (bundle / "README.md").write_text(model_card(name, capabilities, student_scores, parameters, lineage, allow_uncensored))
    return write_manifest(
        bundle, name=name, version="1.0.0", format="nexus-bundle", capabilities=capabilities, adapters=adapters,
        safety={"uncensored": bool(allow_uncensored)}, generation={"max_new_tokens": max_new_tokens}, backbone=config,
        parameters=parameters, student_scores=student_scores, teacher_scores=teacher_scores, retention={}, **manifest_fields,
    )


def _parameter_count(bundle: Path) -> int:
    from safetensors import safe_open

    total = 0
    for file in sorted(bundle.rglob("*.safetensors")):
        if file.parent.name == "router":
            continue
        with safe_open(str(file), "pt") as handle:
            for name in handle.keys():
                total += _numel(handle.get_slice(name).get_shape())
    return total


def _numel(shape: list[int]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def model_card(name: str, capabilities: list[str], scores: dict[str, float], parameters: int, lineage: dict,
               uncensored: bool = False) -> str:
    rows = "\n".join(f"| {c} | {scores.get(c, float('nan')):.3f} |" for c in capabilities)
    return f"""# {name}

A teacher-free student bundle built by NexaCompute. It runs with `nexus` alone (torch, safetensors,
tokenizers); no teacher model, network or hub access is needed.

```python
from nexus import NexusModel

model = NexusModel.load("{name}", device="cpu")
print(model.generate("max(12,40)="))             # the router picks the capability
print(model.generate("7 km in m?", capability="science"))
```

## Capabilities (student exact match on held-out prompts at build time)

| capability | score |
|---|---|
{rows}

Retention against the teacher, per capability, is in `verify_report.json`, written by
`nexa bundle verify` in a fresh process after the teacher's weights were deleted.

## Provenance

- parameters: {parameters:,}
- student checkpoint sha256: `{lineage.get('model_sha256', '?')}`
- built by run `{lineage.get('run_id', '?')}` from pipeline `{lineage.get('pipeline', '?')}`

## Safety

{_safety_text(uncensored)}
"""


def _safety_text(uncensored: bool) -> str:
    if uncensored:
        return ("Built with the explicit uncensored opt-in. The `uncensored` capability answers only when a call passes "
                "`enable_uncensored=True`; the router never picks it otherwise, and every other call runs in standard mode.")
    return "Standard mode only: this bundle has no `uncensored` capability, and the runtime refuses to load one into it."


def build_from_checkpoint(lab, out: Path, *, model: Path, router: Path, benchmark: str, teacher_scores: Path,
                          adapters: Path | None, name: str | None, quantize: str | None, allow_uncensored: bool,
                          max_new_tokens: int, registry: Path | None = None, teacher_name: str | None = None) -> dict[str, Any]:
    """``nexa bundle build``: a bundle from a student checkpoint outside a pipeline, in a run of its own, benchmarked on
    ``benchmark``'s eval rows (all rows when none is split) by ``registry``'s metrics when given; an unsafe capability
    leaves no half-built folder. Returns the command's result (size, int8 sizes, every file's hash)."""
    from nexa.ledger.datasets import read_dataset_rows
    from nexa.ledger.listings import registry_metrics
    from nexa.ledger.runs import start_run

    metrics = registry_metrics(registry, teacher_name) if registry else None
    items = benchmark_items(read_dataset_rows(lab, benchmark), max_new_tokens)
    with start_run(lab, "bundle", config={"model": str(model), "benchmark": benchmark, "quantize": quantize,
                                          "allow_uncensored": allow_uncensored}) as run:
        try:
            manifest = assemble_bundle(
                out, name=name or out.name, model_dir=model, tokenizer_file=model / "tokenizer.json", router_dir=router,
                adapters_dir=adapters, items=items,
                teacher_scores=json.loads(teacher_scores.read_text()), student_scores={},
                lineage={"run_id": run.run_id, "model_sha256": sha256_file(model / "model.safetensors"), "pipeline": "cli"},
                max_new_tokens=max_new_tokens, allow_uncensored=allow_uncensored, built_by=run.run_id, metrics=metrics,
            )
        except UnsafeBundleError:
            shutil.rmtree(out, ignore_errors=True)
            raise
        sizes = quantize_int8(out) if quantize else {}
        manifest = write_manifest(out, quantization="int8-rowwise") if quantize else manifest
    return {"run_id": run.run_id, "status": "succeeded", "bundle": str(out), "size_bytes": bundle_size_bytes(out), **sizes,
            "outputs": [{"path": str(out / rel), "sha256": digest} for rel, digest in manifest["files"].items()]}

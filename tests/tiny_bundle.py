"""Writing a tiny real bundle from a saved student: shared by the runtime's and the server's tests."""

from pathlib import Path

import torch
from safetensors.torch import save_file

from nexa.bundle.build import write_backbone, write_manifest, write_tokenizer
from nexa.niwt.router import DEFAULT_FEATURIZER, train_router, write_router


def write_tiny_bundle(target: Path, student_dir: Path, tokenizer_file: Path, prompts: dict[str, list[str]],
                      lora_shapes: dict[str, tuple[tuple[int, int], tuple[int, int]]], **manifest_fields) -> Path:
    """Backbone + tokenizer + a router trained on ``prompts`` + a random (seed 42) science adapter of ``lora_shapes``."""
    write_backbone(student_dir, target)
    write_tokenizer(tokenizer_file, target)
    capabilities = sorted(prompts)
    texts = [p for c in capabilities for p in prompts[c]]
    labels = [c for c in capabilities for _ in prompts[c]]
    weight, bias = train_router(texts, labels, capabilities, seed=42, epochs=60)
    write_router(target, weight, bias, capabilities, DEFAULT_FEATURIZER)
    (target / "adapters").mkdir()
    torch.manual_seed(42)
    lora = {}
    for module, (a_shape, b_shape) in lora_shapes.items():
        lora[f"{module}.lora_A"] = torch.randn(*a_shape) * 0.5
        lora[f"{module}.lora_B"] = torch.randn(*b_shape) * 0.5
    save_file(lora, str(target / "adapters" / "science.safetensors"),
              metadata={"capability": "science", "rank": "4", "alpha": "8"})
    write_manifest(target, name="tiny", version="0.0.1", capabilities=capabilities,
                   adapters={"science": "adapters/science.safetensors"}, safety={"uncensored": False}, **manifest_fields)
    return target

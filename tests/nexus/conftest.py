"""A tiny real bundle (random Llama backbone, char tokenizer, trained router, one LoRA adapter) for runtime tests."""

import pytest
import torch
from safetensors.torch import save_file

from nexa.bundle.build import write_backbone, write_manifest, write_tokenizer
from nexa.niwt.router import DEFAULT_FEATURIZER, train_router, write_router
from nexa.train.models import DecoderSize, build_model
from nexa.train.tokenizer import train_char_tokenizer

PROMPTS = {"reasoning": [f"max({a},{b})=" for a in range(10) for b in range(0, 50, 7)],
           "science": [f"{v} km in m?" for v in range(1, 60)]}


@pytest.fixture
def hf_student(tmp_path):
    tokenizer = train_char_tokenizer([p for ps in PROMPTS.values() for p in ps])
    model = build_model(DecoderSize(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2),
                        tokenizer.get_vocab_size(), seed=42).eval()
    model.save_pretrained(tmp_path / "student")
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    return model, tokenizer, tmp_path


@pytest.fixture
def bundle(hf_student):
    model, tokenizer, root = hf_student
    target = root / "bundle"
    write_backbone(root / "student", target)
    write_tokenizer(root / "tokenizer.json", target)
    capabilities = sorted(PROMPTS)
    prompts = [p for c in capabilities for p in PROMPTS[c]]
    labels = [c for c in capabilities for _ in PROMPTS[c]]
    weight, bias = train_router(prompts, labels, capabilities, seed=42, epochs=60)
    write_router(target, weight, bias, capabilities, DEFAULT_FEATURIZER)
    (target / "adapters").mkdir()
    torch.manual_seed(42)
    lora = {"model.layers.0.self_attn.q_proj.lora_A": torch.randn(4, 32) * 0.5,
            "model.layers.0.self_attn.q_proj.lora_B": torch.randn(32, 4) * 0.5,
            "model.layers.1.mlp.down_proj.lora_A": torch.randn(4, 96) * 0.5,
            "model.layers.1.mlp.down_proj.lora_B": torch.randn(32, 4) * 0.5}
    save_file(lora, str(target / "adapters" / "science.safetensors"),
              metadata={"capability": "science", "rank": "4", "alpha": "8"})
    write_manifest(target, name="tiny", version="0.0.1", capabilities=capabilities,
                   adapters={"science": "adapters/science.safetensors"}, safety={"uncensored": False},
                   generation={"max_new_tokens": 6})
    return target

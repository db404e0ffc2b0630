"""Every supported family through the bundle: HF-loadable backbone, PEFT-loadable adapters, nexus logits equal to
transformers' (fp32, max abs diff <= 1e-4), the bundle's own chat template, and unimplemented RoPE refused."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared hf_families module
from hf_families import FAMILIES, make_family_model  # noqa: E402

from nexa.bundle.build import UnsupportedBackboneError, write_backbone, write_manifest, write_peft_adapter, write_tokenizer  # noqa: E402
from nexus import NexusModel  # noqa: E402

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "max(3,9)="},
            {"role": "assistant", "content": "9"}, {"role": "user", "content": "max(12,40)="}]


def build_family_bundle(model_dir: Path, bundle: Path) -> Path:
    """Backbone + tokenizer + one random (seed 42) LoRA adapter on layer 0's q_proj and down_proj, as a PEFT folder."""
    config = json.loads((model_dir / "config.json").read_text())
    hidden, inter, q_out = config["hidden_size"], config["intermediate_size"], config["num_attention_heads"] * (
        config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"])
    write_backbone(model_dir, bundle)
    write_tokenizer(model_dir / "tokenizer.json", bundle)
    torch.manual_seed(42)
    lora = {"model.layers.0.self_attn.q_proj.lora_A": torch.randn(4, hidden) * 0.3,
            "model.layers.0.self_attn.q_proj.lora_B": torch.randn(q_out, 4) * 0.3,
            "model.layers.0.mlp.down_proj.lora_A": torch.randn(4, inter) * 0.3,
            "model.layers.0.mlp.down_proj.lora_B": torch.randn(hidden, 4) * 0.3}
    save_file(lora, str(bundle.parent / "science.safetensors"), metadata={"rank": "4", "alpha": "8"})
    write_peft_adapter(bundle.parent / "science.safetensors", bundle / "adapters" / "science")
    write_manifest(bundle, name="tiny", version="0.0.1", capabilities=["science"], adapters={"science": "adapters/science"},
                   safety={"uncensored": False}, generation={"max_new_tokens": 4})
    return bundle


@pytest.mark.parametrize("family", FAMILIES)
def test_bundle_is_hf_and_peft_loadable_and_nexus_matches_transformers(family, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = make_family_model(family, tmp_path / "model")
    bundle = build_family_bundle(model_dir, tmp_path / "bundle")
    original = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    hf = AutoModelForCausalLM.from_pretrained(bundle / "backbone").eval()
    assert hf.config.model_type == family
    runtime = NexusModel.load(bundle)
    ids = torch.tensor([[5, 17, 40, 99, 3, 250, 7, 12], [9, 9, 33, 1, 77, 120, 6, 200]])
    with torch.no_grad():
        reference = original(ids).logits
        assert torch.equal(hf(ids).logits, reference)
        runtime.decoder.set_active_adapter(None)
        base_diff = (runtime.decoder(ids) - reference).abs().max().item()
        peft = PeftModel.from_pretrained(hf, bundle / "adapters" / "science").eval()
        with_adapter = peft(ids).logits
        runtime.decoder.set_active_adapter("science")
        adapter_diff = (runtime.decoder(ids) - with_adapter).abs().max().item()
    assert base_diff <= 1e-4 and adapter_diff <= 1e-4, (base_diff, adapter_diff)
    assert (with_adapter - reference).abs().max().item() > 1e-3  # the adapter changes the outputs
    tokenizer = AutoTokenizer.from_pretrained(bundle / "tokenizer")
    expected = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True)
    expected = expected["input_ids"] if isinstance(expected, dict) or hasattr(expected, "keys") else expected
    assert runtime.tokenizer.encode(runtime.chat_prompt(MESSAGES)).ids == list(expected)
    assert runtime.spec.eos_token_id == tokenizer.eos_token_id not in (0, 1, 2)


def test_unimplemented_rope_variants_are_refused_at_bundle_time(tmp_path):
    model_dir = make_family_model("llama", tmp_path / "model", rope_scaling={"rope_type": "linear", "factor": 2.0})
    with pytest.raises(UnsupportedBackboneError, match="RoPE variant 'linear' is not implemented"):
        write_backbone(model_dir, tmp_path / "bundle")
    assert not (tmp_path / "bundle" / "backbone").exists()

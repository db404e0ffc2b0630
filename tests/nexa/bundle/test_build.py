import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from nexa.bundle.build import quantize_int8, write_backbone, write_manifest
from nexa.bundle.verify import check_hashes, gate, teacher_tensors_inside
from nexa.train.models import DecoderSize, build_model
from nexa.train.tokenizer import SpecialIds


@pytest.fixture
def bundle(tmp_path):
    model = build_model(DecoderSize(hidden_size=32, num_hidden_layers=2, num_attention_heads=2), 20, seed=42,
                        specials=SpecialIds(bos_token_id=1, eos_token_id=2, pad_token_id=0))
    model.save_pretrained(tmp_path / "student")
    target = tmp_path / "bundle"
    write_backbone(tmp_path / "student", target)
    (target / "adapters").mkdir()
    write_manifest(target, name="b")
    return target


def test_backbone_keeps_hf_names_and_drops_the_tied_head(bundle):
    tensors = load_file(str(bundle / "backbone" / "model.safetensors"))
    assert "model.embed_tokens.weight" in tensors and "lm_head.weight" not in tensors
    config = json.loads((bundle / "backbone" / "config.json").read_text())
    assert config["model_type"] == "llama" and config["head_dim"] == 16 and config["tie_word_embeddings"] is True


def test_tampered_or_unlisted_files_are_named(bundle):
    assert check_hashes(bundle) == []
    (bundle / "backbone" / "config.json").write_text("{}")
    (bundle / "extra.bin").write_bytes(b"x")
    problems = check_hashes(bundle)
    assert "backbone/config.json: sha256 mismatch" in problems and "extra.bin: not in manifest" in problems


def test_int8_quantization_is_rowwise_and_close(bundle):
    original = load_file(str(bundle / "backbone" / "model.safetensors"))
    sizes = quantize_int8(bundle)
    assert sizes["size_bytes_after"] < sizes["size_bytes_before"]
    with safe_open(str(bundle / "backbone" / "model.safetensors"), "pt") as handle:
        assert handle.metadata()["quantization"] == "int8-rowwise"
        q = handle.get_tensor("model.layers.0.mlp.up_proj.weight")
        scale = handle.get_tensor("model.layers.0.mlp.up_proj.weight.scale")
        norm = handle.get_tensor("model.norm.weight")
    assert q.dtype == torch.int8 and norm.dtype == torch.float32
    restored = q.float() * scale[:, None]
    w = original["model.layers.0.mlp.up_proj.weight"]
    assert (restored - w).abs().max() <= w.abs().amax(dim=1).max() / 127 / 2 + 1e-7


def test_a_copied_teacher_tensor_is_found(bundle, tmp_path):
    tensors = load_file(str(bundle / "backbone" / "model.safetensors"))
    teacher = tmp_path / "teacher.safetensors"
    save_file({"some.layer": tensors["model.layers.1.mlp.down_proj.weight"].clone()}, str(teacher))
    found = teacher_tensors_inside(bundle, [teacher])
    assert found == ["backbone/model.safetensors:model.layers.1.mlp.down_proj.weight"]
    save_file({"other": torch.randn(8, 8)}, str(teacher))
    assert teacher_tensors_inside(bundle, [teacher]) == []


def test_gate_is_per_capability():
    result = gate({"a": 0.9, "b": 1.0}, {"a": 0.88, "b": 0.96}, 0.97)
    assert result["retention"]["a"] == pytest.approx(0.88 / 0.9)
    assert result["failing"] == ["b"] and result["passed"] is False
    assert gate({"a": 0.9}, {"a": 0.9}, 0.97)["passed"] is True

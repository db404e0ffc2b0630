"""NIWT for every supported family: profile the teacher, synthesize the student in the teacher's family from its
config (Qwen2's qkv bias, Mistral's sliding window, Gemma's embedding scale / 1+w norms / gelu, tied or untied
embeddings, grouped-query attention), distill with PEFT adapters, bundle, and run the bundle under nexus."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/: the shared hf_families module
from hf_families import FAMILIES, bpe_tokenizer, niwt_stages, padded_family_model, tiny_config  # noqa: E402

from nexa.niwt.synthesis import BackboneSize, StudentArch, student_config, synthesize, transfer_weights  # noqa: E402

torch.set_num_threads(1)


def _random_teacher(family: str, **overrides):
    """A random-init tiny model whose biases and norm gains are non-trivial too (HF initialises them to 0 / 1).

    A tied model keeps its final norm uniform: with the head shared with the embedding, the transfer can only
    approximate a non-uniform final gain in a rotated basis."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(42)
    model = AutoModelForCausalLM.from_config(tiny_config(family, bpe_tokenizer(family), attn_implementation="eager",
                                                         **overrides)).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            untied_final = name == "model.norm.weight" and not model.config.tie_word_embeddings
            if name.endswith("bias") or "layernorm" in name or untied_final:
                param.add_(torch.randn_like(param) * 0.2)
    return model


@pytest.mark.parametrize("family", FAMILIES)
def test_full_width_transfer_reproduces_the_teacher_in_every_family(family):
    """All layers, heads and neurons kept under a full rotation: the student computes the teacher's logits."""
    from transformers import AutoModelForCausalLM

    teacher = _random_teacher(family, **({"tie_word_embeddings": False} if family == "llama" else {}))
    hidden = teacher.config.hidden_size
    rotation, _ = torch.linalg.qr(torch.randn(hidden, hidden, generator=torch.Generator().manual_seed(42)))
    size = BackboneSize(hidden_size=hidden, num_hidden_layers=2, num_attention_heads=4, intermediate_size=hidden * 2)
    student = AutoModelForCausalLM.from_config(student_config(teacher.config, size, 8), attn_implementation="eager").eval()
    assert student.config.model_type == family and student.config.num_key_value_heads == 4  # teacher has 2 (GQA)
    transfer_weights(teacher, student, rotation.T.contiguous(), [0, 1], {0: [0, 1, 2, 3], 1: [0, 1, 2, 3]})
    ids = torch.tensor([[5, 6, 7, 8, 9, 40, 41]])
    with torch.no_grad():
        assert torch.allclose(student(ids).logits, teacher(ids).logits, atol=1e-4)


def test_student_config_keeps_the_family_specifics():
    from transformers import AutoConfig

    size = BackboneSize(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    mistral = student_config(tiny_config("mistral", bpe_tokenizer("mistral"), sliding_window=16), size)
    gemma = student_config(tiny_config("gemma", bpe_tokenizer("gemma")), size, 8)
    assert mistral.model_type == "mistral" and mistral.sliding_window == 16
    assert gemma.hidden_activation == "gelu_pytorch_tanh" and gemma.head_dim == 8 and gemma.tie_word_embeddings
    qwen, _ = synthesize(_random_teacher("qwen2"), StudentArch(backbone=size, init="scratch", max_param_ratio=0.9), {},
                         torch.eye(32), 42)
    assert qwen.config.model_type == "qwen2" and qwen.model.layers[0].self_attn.q_proj.bias is not None
    with pytest.raises(ValueError, match="supports the families"):
        student_config(AutoConfig.for_model("phi3", hidden_size=32, num_attention_heads=4), BackboneSize())


@pytest.fixture(scope="module", params=FAMILIES)
def niwt_family_run(request, tmp_path_factory):
    """The NIWT pipeline on a random-init teacher of one family (a zero teacher floor: it knows nothing yet)."""
    from nexa.ledger import Lab
    from nexa.pipeline.runner import run_pipeline
    from nexa.pipeline.spec import load_pipeline

    family = request.param
    root = tmp_path_factory.mktemp(f"niwt-{family}")
    teacher = padded_family_model(family, root / "teacher")
    stages = niwt_stages(teacher, train_rows=70, eval_rows=8,
                         profile={"samples": 16, "pilot_samples": 8, "key_layers": 2, "components": 4,
                                  "residual_components": 32, "batch_size": 16},
                         student={"backbone": {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                                               "intermediate_size": 32}, "max_param_ratio": 0.9},
                         distill={"phase1_steps": 2, "phase2_steps": 1, "check_every": 50, "batch_size": 8,
                                  "anchor_batch": 4, "max_new_tokens": 4, "teacher_floor": 0.0})
    lab = Lab.init(root / "lab")
    path = root / "niwt.yaml"
    path.write_text(yaml.safe_dump({"schema_version": 1, "name": f"niwt-{family}", "seed": 42, "stages": stages}))
    run_pipeline(lab, load_pipeline(path))
    return family, lab, root


def _stage_dir(lab, name) -> Path:
    (folder,) = sorted((lab.root / ".nexa" / "durable" / "stages" / name).iterdir())
    return folder


def test_niwt_student_is_synthesized_in_the_teachers_family_and_bundles(niwt_family_run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from nexa.bundle.build import write_backbone, write_manifest, write_peft_adapter, write_tokenizer
    from nexus import NexusModel

    family, lab, root = niwt_family_run
    synthesized = json.loads((_stage_dir(lab, "synthesize") / "model" / "config.json").read_text())
    teacher = json.loads((root / "teacher" / "config.json").read_text())
    assert synthesized["model_type"] == family and synthesized["vocab_size"] == teacher["vocab_size"]
    assert synthesized["eos_token_id"] == teacher["eos_token_id"] and synthesized["pad_token_id"] == teacher["pad_token_id"]
    plan = json.loads((_stage_dir(lab, "synthesize") / "synthesis.json").read_text())
    assert plan["family"] == family and plan["transfer"]["family"] == family and len(plan["transfer"]["layers"]) == 1

    student = _stage_dir(lab, "student_niwt")
    bundle = root / "bundle"
    write_backbone(student / "model", bundle)
    write_tokenizer(student / "model" / "tokenizer.json", bundle)
    write_peft_adapter(student / "adapters" / "reasoning.safetensors", bundle / "adapters" / "reasoning")
    write_manifest(bundle, name="niwt", version="0.0.1", capabilities=["reasoning"], adapters={"reasoning": "adapters/reasoning"},
                   safety={"uncensored": False}, generation={"max_new_tokens": 4})
    hf = AutoModelForCausalLM.from_pretrained(bundle / "backbone").eval()
    assert hf.config.model_type == family
    peft = PeftModel.from_pretrained(hf, bundle / "adapters" / "reasoning").eval()
    runtime = NexusModel.load(bundle)
    ids = torch.tensor([runtime.tokenizer.encode("max(12,40)=40").ids])
    with torch.no_grad():
        runtime.decoder.set_active_adapter("reasoning")
        assert (runtime.decoder(ids) - peft(ids).logits).abs().max().item() <= 1e-4
    assert isinstance(runtime.generate("max(3,9)=", capability="reasoning", max_new_tokens=3), str)


def test_profile_refuses_an_unsupported_family(tmp_path):
    from nexa.niwt.profile import load_teacher
    from nexa.train.sources import ModelSourceError

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "phi3"}))
    with pytest.raises(ModelSourceError, match="llama, qwen2, mistral, gemma"):
        load_teacher(tmp_path)

import pytest
import torch
from transformers import LlamaForCausalLM

from nexa.niwt.synthesis import (AdapterPolicy, BackboneSize, StudentArch, intrinsic_rank, load_arch, rank_heads,
                                 rank_layers, student_config, synthesize, transfer_weights)


def test_adapter_rank_is_the_intrinsic_pca_dimension_clipped():
    policy = AdapterPolicy(variance_threshold=0.9, min_rank=2, max_rank=6)
    assert intrinsic_rank([0.5, 0.3, 0.15, 0.05], policy) == 3
    assert intrinsic_rank([0.95, 0.05], policy) == 2  # clipped up to min_rank
    assert intrinsic_rank([0.1] * 8, policy) == 6  # clipped down to max_rank
    with pytest.raises(ValueError, match="min_rank"):
        AdapterPolicy(min_rank=8, max_rank=4)


def test_layers_and_heads_follow_the_ablation_ranking():
    drops = [{"0": 0.1, "1": 2.0, "2": 0.5}, {"0": 0.0, "1": 1.0, "2": 0.7}]
    assert rank_layers(drops, 2) == [1, 2]
    importance = [[[0.1, 0.9, 0.2]], [[0.3, 0.8, 0.0]]]
    assert rank_heads(importance, 0, 2) == [0, 1]


def test_full_width_transfer_reproduces_the_teacher_exactly(teacher):
    """With every layer, head and neuron kept and a full rotation, the student computes the teacher's logits."""
    hidden = teacher.config.hidden_size
    rotation, _ = torch.linalg.qr(torch.randn(hidden, hidden, generator=torch.Generator().manual_seed(42)))
    size = BackboneSize(hidden_size=hidden, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96)
    student = LlamaForCausalLM(student_config(teacher.config, size)).eval()
    student.config._attn_implementation = "eager"
    transfer_weights(teacher, student, rotation.T.contiguous(), [0, 1, 2], {0: [0, 1, 2, 3], 1: [0, 1, 2, 3], 2: [0, 1, 2, 3]})
    ids = torch.tensor([[1, 5, 6, 7, 8, 9]])
    with torch.no_grad():
        assert torch.allclose(student(ids).logits, teacher(ids).logits, atol=1e-4)


def test_synthesized_student_is_smaller_and_copies_no_teacher_tensor(teacher):
    profiles = {"reasoning": {"layer_drop": {"0": 0.5, "1": 0.1, "2": 0.9}, "head_importance": [[1, 0, 0.5, 0.2]] * 3,
                              "key_layers": [2, 0], "explained_variance": {"2": [0.6, 0.2, 0.1, 0.1]}}}
    arch = StudentArch(backbone=BackboneSize(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32),
                       max_param_ratio=0.5)
    basis, _ = torch.linalg.qr(torch.randn(32, 32, generator=torch.Generator().manual_seed(0)))
    student, plan = synthesize(teacher, arch, profiles, basis.T[:16].contiguous(), seed=42)
    assert plan["transfer"]["layers"] == [0, 2] and plan["transfer"]["heads"]["0"] == [0, 2]
    assert plan["adapters"]["reasoning"]["rank"] == 3 and plan["param_ratio"] < 0.5
    teacher_tensors = [t for t in teacher.state_dict().values() if t.numel() >= 64]
    for tensor in student.state_dict().values():
        assert not any(tensor.shape == t.shape and torch.equal(tensor, t) for t in teacher_tensors)


def test_transfer_keeps_whole_teacher_heads_at_any_student_width(teacher):
    """4 heads in a 16-wide student still have the teacher's head_dim 8 (the config says so explicitly)."""
    arch = StudentArch(backbone=BackboneSize(hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32),
                       max_param_ratio=0.9)
    profiles = {"reasoning": {"layer_drop": {"0": 0.5, "1": 0.1, "2": 0.9}, "head_importance": [[1, 0, 0.5, 0.2]] * 3,
                              "key_layers": [2], "explained_variance": {"2": [0.6, 0.4]}}}
    student, _ = synthesize(teacher, arch, profiles, torch.eye(32)[:16], seed=42)
    assert student.config.head_dim == 8 and student.model.layers[0].self_attn.q_proj.weight.shape == (32, 16)
    with pytest.raises(ValueError, match="heads"):
        synthesize(teacher, arch.model_copy(update={"backbone": BackboneSize(hidden_size=16, num_attention_heads=8)}),
                   profiles, torch.eye(32)[:16], seed=42)


def test_shipped_student_arch_validates():
    from pathlib import Path

    arch = load_arch(Path(__file__).resolve().parents[3] / "configs" / "student_arch.json")
    assert arch.schema_version == 1 and arch.router == "adapters_only"

"""Stage 3 of NIWT: synthesize the student from the teacher's profile.

The architecture comes from ``configs/student_arch.json`` (:class:`StudentArch`). Each capability gets
one LoRA adapter whose rank is the intrinsic dimension of its profile (PCA components reaching the
explained-variance threshold, clipped), never a neuron count; the router only selects adapters. The
backbone is either freshly initialised or transferred from the teacher: the layers the ablation pilot
ranked highest, the most important heads of each, and every width projected onto the residual stream's
principal basis (norm gains folded into the next linear map), so no teacher tensor is copied verbatim.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from transformers import LlamaConfig, LlamaForCausalLM

ARCH_VERSION = 1


class BackboneSize(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hidden_size: int = Field(64, ge=8)
    num_hidden_layers: int = Field(3, ge=1)
    num_attention_heads: int = Field(2, ge=1)
    intermediate_size: int = Field(256, ge=8)


class AdapterPolicy(BaseModel):
    """Rank = PCA components reaching ``variance_threshold`` on the capability's most important layer, clipped."""

    model_config = ConfigDict(extra="forbid")

    variance_threshold: float = Field(0.9, gt=0, le=1)
    min_rank: int = Field(2, ge=1)
    max_rank: int = Field(16, ge=1)
    alpha_per_rank: float = Field(2.0, gt=0, description="LoRA alpha = alpha_per_rank × rank (scaling 2).")
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj", "up_proj", "down_proj"], min_length=1)

    @model_validator(mode="after")
    def _bounds(self) -> AdapterPolicy:
        if self.min_rank > self.max_rank:
            raise ValueError(f"adapters.min_rank {self.min_rank} exceeds adapters.max_rank {self.max_rank}")
        return self


class StudentArch(BaseModel):
    """``configs/student_arch.json``: the student's backbone, how it is initialised, and its adapter policy."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = ARCH_VERSION
    backbone: BackboneSize = Field(default_factory=BackboneSize)
    init: Literal["transfer", "scratch"] = "transfer"
    adapters: AdapterPolicy = Field(default_factory=AdapterPolicy)
    router: Literal["adapters_only"] = Field("adapters_only", description="The router selects an adapter, nothing else.")
    max_param_ratio: float = Field(0.25, gt=0, le=1, description="Backbone parameters / teacher parameters, at most.")


def load_arch(path: Path) -> StudentArch:
    try:
        return StudentArch.model_validate_json(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise FileNotFoundError(f"{path}: cannot read the student architecture ({error})") from error
    except ValueError as error:
        raise ValueError(f"{path}: not a valid student_arch.json (schema_version {ARCH_VERSION}): {error}") from error


def intrinsic_rank(explained_variance_ratio: list[float], policy: AdapterPolicy) -> int:
    """Components needed to reach the threshold, clipped to [min_rank, max_rank]."""
    total, needed = 0.0, len(explained_variance_ratio) + 1  # not reached within the fitted components
    for index, ratio in enumerate(explained_variance_ratio, start=1):
        total += ratio
        if total >= policy.variance_threshold:
            needed = index
            break
    return max(policy.min_rank, min(policy.max_rank, needed))


def rank_layers(layer_drops: list[dict[str, float]], keep: int) -> list[int]:
    """The ``keep`` layers whose removal hurts most summed over capabilities, in their original order."""
    total: dict[int, float] = {}
    for drops in layer_drops:
        for layer, drop in drops.items():
            total[int(layer)] = total.get(int(layer), 0.0) + drop
    return sorted(sorted(total, key=lambda l: -total[l])[:keep])


def rank_heads(head_importance: list[list[list[float]]], layer: int, keep: int) -> list[int]:
    """The ``keep`` heads of ``layer`` with the most importance summed over capabilities, in original order."""
    heads = len(head_importance[0][layer])
    total = [sum(profile[layer][h] for profile in head_importance) for h in range(heads)]
    return sorted(sorted(range(heads), key=lambda h: -total[h])[:keep])


def student_config(teacher: LlamaConfig, size: BackboneSize) -> LlamaConfig:
    """The student's HF config: the teacher's vocabulary, special tokens and context; the arch's widths."""
    return LlamaConfig(
        vocab_size=teacher.vocab_size, hidden_size=size.hidden_size, intermediate_size=size.intermediate_size,
        num_hidden_layers=size.num_hidden_layers, num_attention_heads=size.num_attention_heads,
        num_key_value_heads=size.num_attention_heads, max_position_embeddings=teacher.max_position_embeddings,
        pad_token_id=teacher.pad_token_id, bos_token_id=teacher.bos_token_id, eos_token_id=teacher.eos_token_id,
        tie_word_embeddings=True, rms_norm_eps=teacher.rms_norm_eps,
    )


def transfer_weights(teacher: LlamaForCausalLM, student: LlamaForCausalLM, basis: torch.Tensor,
                     layers: list[int], heads: dict[int, list[int]]) -> dict:
    """Fill ``student`` from ``teacher`` projected onto ``basis`` [student_hidden, teacher_hidden].

    The student's residual stream is ``basis @ teacher residual``. RMSNorm gains are folded into the
    linear maps that read them, and the student's norms scale by sqrt(D/d) so a projected vector keeps
    the teacher's normalised magnitude. MLP neurons are kept by |gate|·|up|·|down| weight norms.
    """
    t, s = teacher.state_dict(), {}
    d_t, d_s = basis.shape[1], basis.shape[0]
    gain = math.sqrt(d_t / d_s)
    head_dim = teacher.config.hidden_size // teacher.config.num_attention_heads
    U = basis.float()
    s["model.embed_tokens.weight"] = t["model.embed_tokens.weight"] @ U.T
    final = t["model.norm.weight"]
    s["model.norm.weight"] = gain * torch.einsum("ij,j,ij->i", U, final, U)
    neurons = {}
    for new, old in enumerate(layers):
        p, q = f"model.layers.{old}.", f"model.layers.{new}."
        g1, g2 = t[p + "input_layernorm.weight"], t[p + "post_attention_layernorm.weight"]
        rows = torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in heads[old]])
        for name in ("q_proj", "k_proj", "v_proj"):
            s[q + f"self_attn.{name}.weight"] = t[p + f"self_attn.{name}.weight"][rows] * g1 @ U.T
        s[q + "self_attn.o_proj.weight"] = U @ t[p + "self_attn.o_proj.weight"][:, rows]
        gate, up, down = (t[p + f"mlp.{n}_proj.weight"] for n in ("gate", "up", "down"))
        score = gate.norm(dim=1) * up.norm(dim=1) * down.norm(dim=0)
        keep = score.argsort(descending=True)[:student.config.intermediate_size].sort().values
        neurons[old] = keep.tolist()
        s[q + "mlp.gate_proj.weight"] = gate[keep] * g2 @ U.T
        s[q + "mlp.up_proj.weight"] = up[keep] * g2 @ U.T
        s[q + "mlp.down_proj.weight"] = U @ down[:, keep]
        s[q + "input_layernorm.weight"] = torch.full((d_s,), gain)
        s[q + "post_attention_layernorm.weight"] = torch.full((d_s,), gain)
    missing, unexpected = student.load_state_dict({k: v.contiguous() for k, v in s.items()}, strict=False)
    missing = [m for m in missing if m != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(f"transfer left student tensors unset {missing[:5]} / unknown {unexpected[:5]}")
    student.tie_weights()
    return {"layers": layers, "heads": {str(k): v for k, v in heads.items()}, "norm_gain": gain,
            "mlp_neurons_kept": student.config.intermediate_size}


def synthesize(teacher: LlamaForCausalLM, arch: StudentArch, profiles: dict[str, dict], basis: torch.Tensor,
               seed: int) -> tuple[LlamaForCausalLM, dict]:
    """The student backbone and the resolved plan (adapter ranks, layer/head maps) to write as student_arch.json."""
    size = arch.backbone
    config = student_config(teacher.config, size)
    t_head_dim = teacher.config.hidden_size // teacher.config.num_attention_heads
    if arch.init == "transfer":
        if size.hidden_size // size.num_attention_heads != t_head_dim:
            raise ValueError(f"init=transfer keeps whole teacher heads: student head_dim "
                             f"{size.hidden_size // size.num_attention_heads} must equal the teacher's {t_head_dim}")
        if basis.shape[0] < size.hidden_size:
            raise ValueError(f"the profile's residual basis has {basis.shape[0]} directions; the student needs "
                             f"{size.hidden_size} (raise profile residual_components)")
        if size.num_hidden_layers > teacher.config.num_hidden_layers:
            raise ValueError(f"student has {size.num_hidden_layers} layers, the teacher only {teacher.config.num_hidden_layers}")
    torch.manual_seed(seed)
    student = LlamaForCausalLM(config)
    ratio = sum(p.numel() for p in student.parameters()) / sum(p.numel() for p in teacher.parameters())
    if ratio > arch.max_param_ratio:
        raise ValueError(f"student backbone is {ratio:.3f}× the teacher; student_arch max_param_ratio is {arch.max_param_ratio}")
    plan: dict = {"init": arch.init, "param_ratio": round(ratio, 6)}
    if arch.init == "transfer":
        layers = rank_layers([p["layer_drop"] for p in profiles.values()], size.num_hidden_layers)
        heads = {l: rank_heads([p["head_importance"] for p in profiles.values()], l, size.num_attention_heads) for l in layers}
        plan["transfer"] = transfer_weights(teacher, student, basis[: size.hidden_size], layers, heads)
    plan["adapters"] = {cap: adapter_plan(p, arch.adapters) for cap, p in sorted(profiles.items())}
    return student, plan


def adapter_plan(profile: dict, policy: AdapterPolicy) -> dict:
    """One capability's adapter: rank from the intrinsic dimension of its most important layer."""
    top = str(profile["key_layers"][0])
    rank = intrinsic_rank(profile["explained_variance"][top], policy)
    return {"rank": rank, "alpha": policy.alpha_per_rank * rank, "target_modules": policy.target_modules,
            "from_layer": int(top), "variance_threshold": policy.variance_threshold}


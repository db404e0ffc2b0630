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

from nexa.train.sources import SUPPORTED_FAMILIES

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


def head_dim_of(config) -> int:
    """Per-head width: the config's own ``head_dim`` (Gemma sets it freely) else hidden / heads."""
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def norm_offset(config) -> float:
    """Gemma's RMSNorm multiplies by ``1 + weight``; the others by ``weight``."""
    return 1.0 if config.model_type == "gemma" else 0.0


def student_config(teacher, size: BackboneSize, head_dim: int | None = None):
    """The student's HF config in the teacher's family: everything the teacher's config says (vocabulary,
    special tokens, context, RoPE, activation, sliding window, qkv bias, tied embeddings), the arch's widths.

    Every student head gets its own key/value head (``num_key_value_heads`` = heads): a transferred student
    keeps whole teacher query heads, each paired with the key/value head of its teacher group.
    """
    if teacher.model_type not in SUPPORTED_FAMILIES:
        raise ValueError(f"NIWT synthesis supports the families {', '.join(SUPPORTED_FAMILIES)}; the teacher is "
                         f"{teacher.model_type!r}")
    values = teacher.to_dict()
    for derived in ("layer_types", "architectures", "transformers_version", "_name_or_path", "torch_dtype", "dtype"):
        values.pop(derived, None)  # recomputed for the student's depth, or about the teacher's checkpoint only
    values.update(hidden_size=size.hidden_size, intermediate_size=size.intermediate_size,
                  num_hidden_layers=size.num_hidden_layers, num_attention_heads=size.num_attention_heads,
                  num_key_value_heads=size.num_attention_heads,
                  head_dim=head_dim or size.hidden_size // size.num_attention_heads)
    return type(teacher)(**values)


def _kv_rows(head: int, head_dim: int, config) -> torch.Tensor:
    """Rows of k_proj/v_proj serving query head ``head`` (its grouped-query key/value head)."""
    group = config.num_attention_heads // (config.num_key_value_heads or config.num_attention_heads)
    kv = head // group
    return torch.arange(kv * head_dim, (kv + 1) * head_dim)


def transfer_weights(teacher, student, basis: torch.Tensor, layers: list[int], heads: dict[int, list[int]]) -> dict:
    """Fill ``student`` from ``teacher`` (same family) projected onto ``basis`` [student_hidden, teacher_hidden].

    The student's residual stream is ``basis @ teacher residual``. RMSNorm gains (``1 + w`` in Gemma) are
    folded into the linear maps that read them, and the student's norms scale by sqrt(D/d) so a projected
    vector keeps the teacher's normalised magnitude. Gemma scales embeddings by sqrt(width): the student's
    embedding carries sqrt(D/d) so its residual stream starts at the projected teacher's, and with tied
    weights the final norm drops that factor again (untied, the final norm folds into the head exactly).
    Query heads are kept whole with their key/value group's rows (and biases, as in Qwen2). MLP neurons are
    kept by |gate|·|up|·|down| weight norms.
    """
    t, s = teacher.state_dict(), {}
    d_t, d_s = basis.shape[1], basis.shape[0]
    gain = math.sqrt(d_t / d_s)
    offset = norm_offset(teacher.config)
    scaled = teacher.config.model_type == "gemma"
    tied = bool(teacher.config.tie_word_embeddings)
    head_dim = head_dim_of(teacher.config)
    U = basis.float()
    s["model.embed_tokens.weight"] = t["model.embed_tokens.weight"] @ U.T * (gain if scaled else 1.0)
    final = t["model.norm.weight"].float() + offset
    if tied:  # the head is the embedding: the final norm's gain can only be approximated in the new basis
        s["model.norm.weight"] = (1.0 if scaled else gain) * torch.einsum("ij,j,ij->i", U, final, U) - offset
    else:  # folded into the head exactly
        s["lm_head.weight"] = t["lm_head.weight"] * final @ U.T
        s["model.norm.weight"] = torch.full((d_s,), gain - offset)
    for new, old in enumerate(layers):
        p, q = f"model.layers.{old}.", f"model.layers.{new}."
        g1 = t[p + "input_layernorm.weight"].float() + offset
        g2 = t[p + "post_attention_layernorm.weight"].float() + offset
        rows = {"q_proj": torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in heads[old]])}
        rows["k_proj"] = rows["v_proj"] = torch.cat([_kv_rows(h, head_dim, teacher.config) for h in heads[old]])
        for name, kept in rows.items():
            s[q + f"self_attn.{name}.weight"] = t[p + f"self_attn.{name}.weight"][kept] * g1 @ U.T
            if p + f"self_attn.{name}.bias" in t:
                s[q + f"self_attn.{name}.bias"] = t[p + f"self_attn.{name}.bias"][kept]
        s[q + "self_attn.o_proj.weight"] = U @ t[p + "self_attn.o_proj.weight"][:, rows["q_proj"]]
        if p + "self_attn.o_proj.bias" in t:
            s[q + "self_attn.o_proj.bias"] = U @ t[p + "self_attn.o_proj.bias"]
        gate, up, down = (t[p + f"mlp.{n}_proj.weight"] for n in ("gate", "up", "down"))
        score = gate.norm(dim=1) * up.norm(dim=1) * down.norm(dim=0)
        keep = score.argsort(descending=True)[:student.config.intermediate_size].sort().values
        s[q + "mlp.gate_proj.weight"] = gate[keep] * g2 @ U.T
        s[q + "mlp.up_proj.weight"] = up[keep] * g2 @ U.T
        s[q + "mlp.down_proj.weight"] = U @ down[:, keep]
        s[q + "input_layernorm.weight"] = torch.full((d_s,), gain - offset)
        s[q + "post_attention_layernorm.weight"] = torch.full((d_s,), gain - offset)
    missing, unexpected = student.load_state_dict({k: v.contiguous() for k, v in s.items()}, strict=False)
    missing = [m for m in missing if m != "lm_head.weight" or not tied]
    if missing or unexpected:
        raise RuntimeError(f"transfer left student tensors unset {missing[:5]} / unknown {unexpected[:5]}")
    student.tie_weights()
    return {"layers": layers, "heads": {str(k): v for k, v in heads.items()}, "norm_gain": gain,
            "mlp_neurons_kept": student.config.intermediate_size, "family": teacher.config.model_type}


def synthesize(teacher, arch: StudentArch, profiles: dict[str, dict], basis: torch.Tensor, seed: int) -> tuple[object, dict]:
    """The student backbone (in the teacher's family) and the resolved plan (adapter ranks, layer/head maps)."""
    from transformers import AutoModelForCausalLM

    size = arch.backbone
    t_head_dim = head_dim_of(teacher.config)
    if arch.init == "transfer":
        if size.num_attention_heads > teacher.config.num_attention_heads:
            raise ValueError(f"student has {size.num_attention_heads} heads, the teacher only "
                             f"{teacher.config.num_attention_heads}")
        if basis.shape[0] < size.hidden_size:
            raise ValueError(f"the profile's residual basis has {basis.shape[0]} directions; the student needs "
                             f"{size.hidden_size} (raise profile residual_components)")
        if size.num_hidden_layers > teacher.config.num_hidden_layers:
            raise ValueError(f"student has {size.num_hidden_layers} layers, the teacher only {teacher.config.num_hidden_layers}")
    config = student_config(teacher.config, size, t_head_dim if arch.init == "transfer" else None)  # whole teacher heads
    torch.manual_seed(seed)
    student = AutoModelForCausalLM.from_config(config)
    ratio = sum(p.numel() for p in student.parameters()) / sum(p.numel() for p in teacher.parameters())
    if ratio > arch.max_param_ratio:
        raise ValueError(f"student backbone is {ratio:.3f}× the teacher; student_arch max_param_ratio is {arch.max_param_ratio}")
    plan: dict = {"init": arch.init, "param_ratio": round(ratio, 6), "family": config.model_type}
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


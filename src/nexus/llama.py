"""A Llama-style decoder in plain torch that computes what ``transformers`` computes for the Llama, Mistral,
Qwen2 and Gemma families.

The four differ in a few switches (Qwen2: biases on q/k/v; Gemma: ``(1 + w)`` RMSNorm, embeddings scaled
by sqrt(hidden), tanh-GELU MLP); everything else is shared. Kept independent of ``transformers`` so a
shipped bundle needs nothing but torch; a test pins its logits to the HF implementation's for every
family. What it does not implement (RoPE scaling variants, active sliding windows, other biases or
activations) is refused by :func:`unsupported_reason`, which the bundle builder calls too, so a bundle is
never silently wrong. Linear layers can carry several LoRA adapters, one active at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


FAMILIES = {
    "llama": {"activation": "silu"},
    "mistral": {"activation": "silu"},
    "qwen2": {"activation": "silu", "qkv_bias": True},
    "gemma": {"activation": "gelu_pytorch_tanh", "norm_offset": True, "scale_embeddings": True},
}


def unsupported_reason(config: dict) -> str | None:
    """Why this runtime cannot run an HF config exactly (None when it can)."""
    family = config.get("model_type") or config.get("architecture", "llama")
    if family not in FAMILIES:
        return f"model family {family!r} is not supported by nexus; supported: {', '.join(FAMILIES)}"
    rope = config.get("rope_scaling") or config.get("rope_parameters") or {}
    rope_type = rope.get("rope_type") or rope.get("type") or "default"
    if rope_type != "default":
        return f"RoPE variant {rope_type!r} is not implemented by nexus (default RoPE only)"
    window = config.get("sliding_window")
    windowed = config.get("use_sliding_window", family == "mistral")
    if windowed and window is not None and window < config.get("max_position_embeddings", 0):
        return f"sliding-window attention ({window} < context {config.get('max_position_embeddings')}) is not implemented by nexus"
    if config.get("attention_bias") or config.get("mlp_bias"):
        return "attention_bias/mlp_bias are not implemented by nexus for this family"
    activation = config.get("hidden_activation") or config.get("hidden_act") or FAMILIES[family]["activation"]
    if activation != FAMILIES[family]["activation"]:
        return f"activation {activation!r} is not implemented by nexus for {family} (expects {FAMILIES[family]['activation']!r})"
    return None


@dataclass(frozen=True)
class LlamaSpec:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    bos_token_id: int | None
    eos_token_id: int
    pad_token_id: int
    family: str = "llama"

    @classmethod
    def from_json(cls, config: dict) -> LlamaSpec:
        """From a bundle backbone config: an HF config.json (with ``model_type``) or the older nexus one."""
        reason = unsupported_reason(config)
        if reason:
            raise KeyError(reason)
        values = dict(config)
        values["family"] = config.get("model_type") or config.get("architecture", "llama")
        values["head_dim"] = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
        values["rope_theta"] = config.get("rope_theta") or (config.get("rope_parameters") or {}).get("rope_theta", 10000.0)
        values.setdefault("num_key_value_heads", config.get("num_attention_heads"))
        values.setdefault("tie_word_embeddings", True)
        values.setdefault("bos_token_id", None)
        fields = cls.__dataclass_fields__
        missing = [name for name in fields if name not in values]
        if missing:
            raise KeyError(f"backbone config lacks {missing}")
        return cls(**{name: values[name] for name in fields})

    @property
    def traits(self) -> dict:
        return FAMILIES[self.family]


class AdaptableLinear(nn.Module):
    """A bias-free linear layer plus named low-rank deltas; ``active`` selects which delta is added."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(out_features), requires_grad=False) if bias else None
        self.adapters: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}
        self.active: str | None = None

    def add_adapter(self, name: str, lora_a: torch.Tensor, lora_b: torch.Tensor, scaling: float) -> None:
        out_features, in_features = self.weight.shape
        if lora_a.shape[1] != in_features or lora_b.shape[0] != out_features or lora_a.shape[0] != lora_b.shape[1]:
            raise ValueError(f"adapter {name!r}: lora_A {tuple(lora_a.shape)} / lora_B {tuple(lora_b.shape)} "
                             f"do not fit a {out_features}x{in_features} weight")
        self.adapters[name] = (lora_a.to(self.weight), lora_b.to(self.weight), scaling)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)
        if self.active in self.adapters:
            lora_a, lora_b, scaling = self.adapters[self.active]
            out = out + scaling * F.linear(F.linear(x, lora_a), lora_b)
        return out


class RMSNorm(nn.Module):
    """Llama's ``w * x`` (cast first) or, with ``offset``, Gemma's ``(1 + w) * x`` (in float, cast last)."""

    def __init__(self, size: int, eps: float, offset: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size), requires_grad=False)
        self.eps, self.offset = eps, offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.offset:
            return (x * (1.0 + self.weight.float())).to(dtype)
        return self.weight * x.to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Rotary(nn.Module):
    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = positions[..., None].float() * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype)[:, None], emb.sin().to(dtype)[:, None]


class KVCache:
    """Per-layer keys and values of everything seen so far, plus which of those positions are padding."""

    def __init__(self, n_layers: int):
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers
        self.key_mask: torch.Tensor | None = None

    def append(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.keys[layer] is not None:
            key = torch.cat([self.keys[layer], key], dim=2)
            value = torch.cat([self.values[layer], value], dim=2)
        self.keys[layer], self.values[layer] = key, value
        return key, value

    @property
    def length(self) -> int:
        return 0 if self.keys[0] is None else self.keys[0].shape[2]


class Attention(nn.Module):
    def __init__(self, spec: LlamaSpec):
        super().__init__()
        self.n_heads, self.n_kv, self.head_dim = spec.num_attention_heads, spec.num_key_value_heads, spec.head_dim
        bias = spec.traits.get("qkv_bias", False)
        self.q_proj = AdaptableLinear(spec.hidden_size, self.n_heads * self.head_dim, bias)
        self.k_proj = AdaptableLinear(spec.hidden_size, self.n_kv * self.head_dim, bias)
        self.v_proj = AdaptableLinear(spec.hidden_size, self.n_kv * self.head_dim, bias)
        self.o_proj = AdaptableLinear(self.n_heads * self.head_dim, spec.hidden_size)

    def forward(self, x, cos, sin, mask, cache: KVCache | None, layer: int):
        batch, length, _ = x.shape
        q = self.q_proj(x).view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, length, self.n_kv, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, length, self.n_kv, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if cache is not None:
            k, v = cache.append(layer, k, v)
        if self.n_kv != self.n_heads:
            repeat = self.n_heads // self.n_kv
            k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, -1))


class MLP(nn.Module):
    def __init__(self, spec: LlamaSpec):
        super().__init__()
        self.gate_proj = AdaptableLinear(spec.hidden_size, spec.intermediate_size)
        self.up_proj = AdaptableLinear(spec.hidden_size, spec.intermediate_size)
        self.down_proj = AdaptableLinear(spec.intermediate_size, spec.hidden_size)
        self.gelu = spec.traits["activation"] == "gelu_pytorch_tanh"

    def forward(self, x):
        gate = self.gate_proj(x)
        gate = F.gelu(gate, approximate="tanh") if self.gelu else F.silu(gate)
        return self.down_proj(gate * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, spec: LlamaSpec):
        super().__init__()
        self.self_attn = Attention(spec)
        self.mlp = MLP(spec)
        offset = spec.traits.get("norm_offset", False)
        self.input_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps, offset)
        self.post_attention_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps, offset)

    def forward(self, x, cos, sin, mask, cache, layer):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, layer)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaBody(nn.Module):
    def __init__(self, spec: LlamaSpec):
        super().__init__()
        self.embed_tokens = nn.Embedding(spec.vocab_size, spec.hidden_size)
        self.embed_tokens.weight.requires_grad_(False)
        self.layers = nn.ModuleList(DecoderLayer(spec) for _ in range(spec.num_hidden_layers))
        self.norm = RMSNorm(spec.hidden_size, spec.rms_norm_eps, spec.traits.get("norm_offset", False))


class LlamaDecoder(nn.Module):
    """Parameter names match HF's LlamaForCausalLM, so its state_dict loads unchanged."""

    def __init__(self, spec: LlamaSpec):
        super().__init__()
        self.spec = spec
        self.model = LlamaBody(spec)
        self.lm_head = AdaptableLinear(spec.hidden_size, spec.vocab_size)
        if spec.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.rotary = Rotary(spec.head_dim, spec.rope_theta)

    def adaptable_modules(self) -> dict[str, AdaptableLinear]:
        return {name: module for name, module in self.named_modules() if isinstance(module, AdaptableLinear)}

    def set_active_adapter(self, name: str | None) -> None:
        for module in self.adaptable_modules().values():
            module.active = name

    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        """Logits for ``input_ids`` [batch, new]; ``attention_mask`` [batch, new] marks real tokens (left padding)."""
        batch, new = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
        past_mask = cache.key_mask if cache is not None and cache.key_mask is not None else attention_mask[:, :0]
        key_mask = torch.cat([past_mask, attention_mask.bool()], dim=1)
        positions = (key_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -new:]
        if cache is not None:
            cache.key_mask = key_mask
        x = self.model.embed_tokens(input_ids)
        if self.spec.traits.get("scale_embeddings"):
            x = x * torch.tensor(self.spec.hidden_size**0.5, dtype=x.dtype)
        cos, sin = self.rotary(positions, x.dtype)
        mask = self._mask(key_mask, new, x.dtype)
        for index, layer in enumerate(self.model.layers):
            x = layer(x, cos, sin, mask, cache, index)
        return self.lm_head(self.model.norm(x))

    @staticmethod
    def _mask(key_mask: torch.Tensor, new: int, dtype: torch.dtype) -> torch.Tensor:
        """Additive mask [batch, 1, new, total]: causal over the new tokens, and never onto padding."""
        total = key_mask.shape[1]
        causal = torch.ones(new, total, dtype=torch.bool, device=key_mask.device).tril(diagonal=total - new)
        allowed = causal[None, None] & key_mask[:, None, None, :]
        # A padding query row would otherwise see nothing and turn into NaN; let it see itself.
        own = torch.arange(total, device=key_mask.device)[None, :] == (torch.arange(new, device=key_mask.device)[:, None] + total - new)
        allowed = allowed | own[None, None]
        return torch.zeros(allowed.shape, dtype=dtype, device=key_mask.device).masked_fill(~allowed, torch.finfo(dtype).min)

"""A Llama-style decoder in plain torch that computes what ``transformers``' LlamaForCausalLM computes.

Kept independent of ``transformers`` so a shipped bundle needs nothing but torch; a test pins its
logits to the HF implementation's. Linear layers can carry several LoRA adapters, one active at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


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
    bos_token_id: int
    eos_token_id: int
    pad_token_id: int

    @classmethod
    def from_json(cls, config: dict) -> LlamaSpec:
        fields = cls.__dataclass_fields__
        missing = [name for name in fields if name not in config]
        if missing:
            raise KeyError(f"backbone config lacks {missing}")
        return cls(**{name: config[name] for name in fields})


class AdaptableLinear(nn.Module):
    """A bias-free linear layer plus named low-rank deltas; ``active`` selects which delta is added."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features), requires_grad=False)
        self.adapters: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}
        self.active: str | None = None

    def add_adapter(self, name: str, lora_a: torch.Tensor, lora_b: torch.Tensor, scaling: float) -> None:
        out_features, in_features = self.weight.shape
        if lora_a.shape[1] != in_features or lora_b.shape[0] != out_features or lora_a.shape[0] != lora_b.shape[1]:
            raise ValueError(f"adapter {name!r}: lora_A {tuple(lora_a.shape)} / lora_B {tuple(lora_b.shape)} "
                             f"do not fit a {out_features}x{in_features} weight")
        self.adapters[name] = (lora_a.to(self.weight), lora_b.to(self.weight), scaling)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight)
        if self.active in self.adapters:
            lora_a, lora_b, scaling = self.adapters[self.active]
            out = out + scaling * F.linear(F.linear(x, lora_a), lora_b)
        return out


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size), requires_grad=False)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
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
        self.q_proj = AdaptableLinear(spec.hidden_size, self.n_heads * self.head_dim)
        self.k_proj = AdaptableLinear(spec.hidden_size, self.n_kv * self.head_dim)
        self.v_proj = AdaptableLinear(spec.hidden_size, self.n_kv * self.head_dim)
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

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, spec: LlamaSpec):
        super().__init__()
        self.self_attn = Attention(spec)
        self.mlp = MLP(spec)
        self.input_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)

    def forward(self, x, cos, sin, mask, cache, layer):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, layer)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaBody(nn.Module):
    def __init__(self, spec: LlamaSpec):
        super().__init__()
        self.embed_tokens = nn.Embedding(spec.vocab_size, spec.hidden_size)
        self.embed_tokens.weight.requires_grad_(False)
        self.layers = nn.ModuleList(DecoderLayer(spec) for _ in range(spec.num_hidden_layers))
        self.norm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)


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

"""A fixed-point (deep equilibrium) decoder: one weight-tied block iterated to z* = f(z*, x).

Depth is not a hyperparameter: the solver (Anderson acceleration, from ``torchdeq``) iterates the block
until the residual |f(z) - z| / |f(z)| falls below ``tol`` or ``max_iters`` is reached, and each forward
records how many iterations and what residual it took. When Anderson diverges (a non-finite or growing
residual) the forward falls back to damped fixed-point iteration from zero and says so in its stats.
The block is causal, so the equilibrium of a prefix is the prefix of the equilibrium: generation extends
the sequence by one token and solves again. Parameter names are those of ``nexa.models``' training wrapper.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

import torch.nn.functional as F

from nexus.files import spec_from_json
from nexus.llama import MLP, AdaptableLinear, LlamaDecoder, LlamaSpec, RMSNorm, Rotary, rotate_half

FALLBACK_DAMPING = 0.5


@dataclass(frozen=True)
class DEQSpec:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    bos_token_id: int
    eos_token_id: int
    pad_token_id: int
    max_iters: int
    tol: float
    num_hidden_layers: int = 1  # one weight-tied block

    @classmethod
    def from_json(cls, config: dict) -> DEQSpec:
        return spec_from_json(cls, config, derived=("num_hidden_layers",))

    def block_spec(self) -> LlamaSpec:
        return LlamaSpec(vocab_size=self.vocab_size, hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
                         num_hidden_layers=1, num_attention_heads=self.num_attention_heads,
                         num_key_value_heads=self.num_attention_heads, head_dim=self.head_dim, rms_norm_eps=self.rms_norm_eps,
                         rope_theta=self.rope_theta, max_position_embeddings=self.max_position_embeddings,
                         tie_word_embeddings=self.tie_word_embeddings, bos_token_id=self.bos_token_id,
                         eos_token_id=self.eos_token_id, pad_token_id=self.pad_token_id)


@dataclass
class SolverStats:
    """What one forward's fixed-point solve took."""

    iterations: int
    residual: float
    fallback: bool


@dataclass
class DEQCache:
    """The tokens seen so far: each step re-solves the (causal) equilibrium over the whole sequence."""

    input_ids: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    stats: list[SolverStats] = field(default_factory=list)


class CausalSelfAttention(nn.Module):
    """Multi-head attention (Llama's projections and rotary); without padding it uses SDPA's causal kernel,
    which never builds a length × length mask, so long sequences stay affordable."""

    def __init__(self, spec: DEQSpec):
        super().__init__()
        self.n_heads, self.head_dim = spec.num_attention_heads, spec.head_dim
        width = self.n_heads * self.head_dim
        self.q_proj = AdaptableLinear(spec.hidden_size, width)
        self.k_proj = AdaptableLinear(spec.hidden_size, width)
        self.v_proj = AdaptableLinear(spec.hidden_size, width)
        self.o_proj = AdaptableLinear(width, spec.hidden_size)

    def forward(self, x, cos, sin, additive_mask):
        batch, length, _ = x.shape
        q, k, v = (proj(x).view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=additive_mask, is_causal=additive_mask is None)
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, -1))


class EquilibriumBlock(nn.Module):
    """f(z, x) = h + MLP(norm(h)) with h = x + Attention(norm(z)): z enters only through a normalised
    attention read, which keeps f well-conditioned enough for a fixed point to exist and be found."""

    def __init__(self, spec: DEQSpec):
        super().__init__()
        block = spec.block_spec()
        self.input_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)
        self.self_attn = CausalSelfAttention(spec)
        self.post_attention_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)
        self.mlp = MLP(block)

    def forward(self, z, x, cos, sin, mask):
        h = x + self.self_attn(self.input_layernorm(z), cos, sin, mask)
        return h + self.mlp(self.post_attention_layernorm(h))


class DEQCore(nn.Module):
    """Embedding → equilibrium of the tied block → norm → head. ``solve(f, z0)`` is injected so training
    (implicit differentiation) and inference share every weight and every line of the model."""

    def __init__(self, spec: DEQSpec):
        super().__init__()
        self.spec = spec
        self.embed_tokens = nn.Embedding(spec.vocab_size, spec.hidden_size)
        self.block = EquilibriumBlock(spec)
        self.norm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)
        self.lm_head = nn.Linear(spec.hidden_size, spec.vocab_size, bias=False)
        if spec.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self.rotary = Rotary(spec.head_dim, spec.rope_theta)

    def dynamics(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """The map z ↦ f(z, x) for these tokens (positions from the mask, so left padding is harmless)."""
        mask = attention_mask.bool()
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        # Scaled as in Gemma: an injection of unit size keeps the normalised read of z from amplifying
        # small differences, so f stays contractive at initialisation even for wide blocks.
        x = self.embed_tokens(input_ids) * self.spec.hidden_size ** 0.5
        cos, sin = self.rotary(positions, x.dtype)
        additive = None if bool(mask.all()) else LlamaDecoder._mask(mask, input_ids.shape[1], x.dtype)
        return x, (lambda z: self.block(z, x, cos, sin, additive))

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.norm(z))


def relative_residual(f, z: torch.Tensor) -> float:
    fz = f(z)
    return float((fz - z).norm() / (fz.norm() + 1e-9))


def damped_iteration(f, z0: torch.Tensor, max_iters: int, tol: float) -> tuple[torch.Tensor, SolverStats]:
    """The fallback: z ← (1-β) z + β f(z); slower than Anderson but contracts whenever f is not too expansive."""
    z, residual, step = z0, float("inf"), 0
    for step in range(1, max_iters + 1):
        fz = f(z)
        residual = float((fz - z).norm() / (fz.norm() + 1e-9))
        z = (1 - FALLBACK_DAMPING) * z + FALLBACK_DAMPING * fz
        if residual < tol:
            break
    return z, SolverStats(step, residual, True)


def solve_equilibrium(f, z0: torch.Tensor, max_iters: int, tol: float) -> tuple[torch.Tensor, SolverStats]:
    """Anderson acceleration (torchdeq, no gradient tape); the damped iteration when it does not converge."""
    from torchdeq.solver import anderson_solver

    with torch.no_grad():
        z, _, info = anderson_solver(f, z0, max_iter=max_iters, tol=tol, stop_mode="rel")
        residual = relative_residual(f, z)
        if not torch.isfinite(z).all() or residual > max(10 * tol, 1e-2):
            fallback_z, stats = damped_iteration(f, torch.zeros_like(z0), max_iters, tol)
            if stats.residual < residual or not torch.isfinite(z).all():
                return fallback_z, stats
        return z, SolverStats(int(info["nstep"].max()), residual, False)


class DEQDecoder(nn.Module):
    """The runtime's DEQ: the same interface as the Llama decoder (``new_cache``, masks, adapters)."""

    def __init__(self, spec: DEQSpec):
        super().__init__()
        self.spec = spec
        self.core = DEQCore(spec)
        self.requires_grad_(False)
        self.last_stats: SolverStats | None = None

    def new_cache(self) -> DEQCache:
        return DEQCache()

    adaptable_modules = LlamaDecoder.adaptable_modules  # LoRA adapters attach to the block's projections
    set_active_adapter = LlamaDecoder.set_active_adapter

    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                cache: DEQCache | None = None) -> torch.Tensor:
        """Logits for the new tokens; with a cache, the equilibrium is solved over everything seen so far."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
        new = input_ids.shape[1]
        if cache is not None:
            if cache.input_ids is not None:
                input_ids = torch.cat([cache.input_ids, input_ids], dim=1)
                attention_mask = torch.cat([cache.mask, attention_mask.bool()], dim=1)
            cache.input_ids, cache.mask = input_ids, attention_mask.bool()
        x, f = self.core.dynamics(input_ids, attention_mask)
        z, stats = solve_equilibrium(f, torch.zeros_like(x), self.spec.max_iters, self.spec.tol)
        self.last_stats = stats
        if cache is not None:
            cache.stats.append(stats)
        return self.core.logits(z)[:, -new:]


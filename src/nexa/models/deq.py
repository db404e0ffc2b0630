"""The ``deq`` student: one weight-tied block iterated to its fixed point z* = f(z*, x), trained by implicit differentiation.

The model code is ``nexus.deq.DEQCore`` (the runtime's own), wrapped as an HF ``PreTrainedModel`` so the
Trainer, ``save_pretrained`` and ``generate`` work unchanged. Training solves with ``torchdeq``'s Anderson and
backpropagates through the equilibrium either with the implicit function theorem (a backward fixed-point solve,
the default) or with a phantom gradient (``phantom_steps`` damped steps of f unrolled from the solver's z: exact
IFT at an inexact fixed point gives a poor gradient, and the phantom one is cheaper); ``jacobian_weight`` adds
torchdeq's Jacobian regulariser, which keeps f contractive so the solver keeps converging as the weights move
(without it the golden-task DEQ drifted to a spectral radius of 2-4 at its fixed point, the solver ran at its
cap and the fallback took over). Every forward appends its solver iterations and residual to ``solver_log``.
When the solver diverges the forward falls back to damped iteration and a one-step (Jacobian-free) gradient
through f at the point it reached, and records ``fallback``.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from nexus.deq import DEQCore, DEQSpec, SolverStats, damped_iteration, solve_equilibrium
from nexus.llama import AdaptableLinear, RMSNorm, Rotary

DIVERGED_RESIDUAL = 0.1  # a relative residual above this after the solve counts as divergence


class NexaDEQConfig(PretrainedConfig):
    model_type = "nexa_deq"

    def __init__(self, vocab_size: int = 64, hidden_size: int = 64, intermediate_size: int = 256,
                 num_attention_heads: int = 4, rms_norm_eps: float = 1e-6, rope_theta: float = 10000.0,
                 max_position_embeddings: int = 512, max_iters: int = 24, tol: float = 1e-3,
                 backward_max_iters: int = 24, phantom_steps: int = 0, phantom_tau: float = 0.5,
                 train_max_iters: int | None = None, jacobian_weight: float = 0.0, tie_word_embeddings: bool = True, bos_token_id: int | None = None,
                 eos_token_id: int | None = None, pad_token_id: int | None = None, **kwargs):
        self.vocab_size, self.hidden_size, self.intermediate_size = vocab_size, hidden_size, intermediate_size
        # the tokenizer's own special ids: nexa.train.build sets them from the tokenizer after building
        self.bos_token_id, self.eos_token_id, self.pad_token_id = bos_token_id, eos_token_id, pad_token_id
        self.num_attention_heads, self.rms_norm_eps, self.rope_theta = num_attention_heads, rms_norm_eps, rope_theta
        self.max_position_embeddings, self.max_iters, self.tol = max_position_embeddings, max_iters, tol
        self.backward_max_iters = backward_max_iters
        # phantom_steps > 0: phantom gradient (that many damped, unrolled steps of f from the solver's z, damping
        # phantom_tau) instead of the exact IFT solve; train_max_iters: the forward solver's cap while training
        self.phantom_steps, self.phantom_tau, self.train_max_iters = phantom_steps, phantom_tau, train_max_iters
        # weight of torchdeq's Jacobian regulariser (Hutchinson estimate of |df/dz|_F² at the fixed point) in the
        # training loss: it keeps f contractive, so the solver keeps converging as the weights move
        self.jacobian_weight = jacobian_weight
        self.num_hidden_layers = 1  # one weight-tied block (what HF cache/generation utilities ask for)
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)

    def spec(self) -> DEQSpec:
        return DEQSpec(vocab_size=self.vocab_size, hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
                       num_attention_heads=self.num_attention_heads, head_dim=self.hidden_size // self.num_attention_heads,
                       rms_norm_eps=self.rms_norm_eps, rope_theta=self.rope_theta,
                       max_position_embeddings=self.max_position_embeddings, tie_word_embeddings=self.tie_word_embeddings,
                       bos_token_id=self.bos_token_id, eos_token_id=self.eos_token_id, pad_token_id=self.pad_token_id,
                       max_iters=self.max_iters, tol=self.tol)


class NexaDEQForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = NexaDEQConfig
    base_model_prefix = "core"
    _tied_weights_keys = {"core.lm_head.weight": "core.embed_tokens.weight"}
    _supports_cache_class = False

    def __init__(self, config: NexaDEQConfig):
        super().__init__(config)
        self.core = DEQCore(config.spec())
        self.core.requires_grad_(True)  # the runtime's layers are frozen by default
        self.solver_log: list[SolverStats] = []
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        std = 0.02
        if isinstance(module, (nn.Linear, AdaptableLinear)):
            nn.init.normal_(module.weight, std=std)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)
        elif isinstance(module, Rotary):
            fresh = Rotary(module.inv_freq.numel() * 2, self.config.rope_theta)
            module.inv_freq = fresh.inv_freq.to(module.inv_freq.device)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.core.embed_tokens

    def get_output_embeddings(self) -> nn.Linear:
        return self.core.lm_head

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, **kwargs):
        """No cache: every step re-solves the causal equilibrium over the whole sequence."""
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **kwargs) -> CausalLMOutputWithPast:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
        x, f = self.core.dynamics(input_ids, attention_mask)
        z, stats = self._equilibrium(f, x) if torch.is_grad_enabled() else solve_equilibrium(
            f, torch.zeros_like(x), self.config.max_iters, self.config.tol)
        self.solver_log.append(stats)
        logits = self.core.logits(z)
        loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size) if labels is not None else None
        if loss is not None and self.training and self.config.jacobian_weight:
            loss = loss + self.config.jacobian_weight * self._jacobian_penalty(f, z)
        return CausalLMOutputWithPast(loss=loss, logits=logits)

    def _equilibrium(self, f, x: torch.Tensor) -> tuple[torch.Tensor, SolverStats]:
        """z* with an implicit-differentiation backward (torchdeq IFT); the fallback when it diverges."""
        from torchdeq import get_deq

        config = self.config
        gradient = ({"ift": False, "grad": config.phantom_steps, "tau": config.phantom_tau} if config.phantom_steps else
                    {"ift": True, "b_solver": "anderson", "b_max_iter": config.backward_max_iters, "b_tol": config.tol,
                     "b_stop_mode": "rel"})
        deq = get_deq(f_solver="anderson", f_max_iter=config.train_max_iters or config.max_iters, f_tol=config.tol,
                      f_stop_mode="rel", **gradient)
        states, info = deq(f, torch.zeros_like(x))
        z = states[-1]
        residual = float(info["rel_lowest"].mean())
        if torch.isfinite(z).all() and residual <= DIVERGED_RESIDUAL:
            return z, SolverStats(int(info["nstep"].float().mean().round()), residual, False)
        with torch.no_grad():
            reached, stats = damped_iteration(f, torch.zeros_like(x), config.max_iters, config.tol)
        return f(reached), stats

    @staticmethod
    def _jacobian_penalty(f, z: torch.Tensor) -> torch.Tensor:
        """|df/dz|_F² per element at the equilibrium (one Hutchinson probe), differentiable in the weights."""
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from torchdeq.loss import jac_reg

        z0 = z.detach().requires_grad_()
        with sdpa_kernel(SDPBackend.MATH):  # the fused CPU kernel has no double backward
            return jac_reg(f(z0), z0, vecs=1)

    def solver_summary(self) -> dict[str, float]:
        """Mean iterations and residual over the logged forwards, and how often the fallback ran."""
        if not self.solver_log:
            return {"forwards": 0, "mean_iters": 0.0, "mean_residual": 0.0, "fallback_fraction": 0.0}
        log = [asdict(s) for s in self.solver_log]
        return {"forwards": len(log), "mean_iters": sum(s["iterations"] for s in log) / len(log),
                "mean_residual": sum(s["residual"] for s in log) / len(log),
                "fallback_fraction": sum(s["fallback"] for s in log) / len(log)}


def build_deq(vocab_size: int, hidden_size: int = 64, intermediate_size: int = 256, num_attention_heads: int = 4,
              max_position_embeddings: int = 512, max_iters: int = 24, tol: float = 1e-3,
              **training: float | int) -> NexaDEQForCausalLM:
    """A freshly initialised fixed-point decoder (the caller seeds torch and sets the tokenizer's special ids).

    ``training``: the training-only solver and gradient settings of :class:`NexaDEQConfig` (``phantom_steps``,
    ``phantom_tau``, ``train_max_iters``, ``jacobian_weight``, ``backward_max_iters``)."""
    config = NexaDEQConfig(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
                           num_attention_heads=num_attention_heads, max_position_embeddings=max_position_embeddings,
                           max_iters=max_iters, tol=tol, **training)
    return NexaDEQForCausalLM(config)


def register_deq() -> None:
    """Let ``AutoConfig``/``AutoModelForCausalLM`` read saved DEQ folders (idempotent)."""
    try:
        AutoConfig.register(NexaDEQConfig.model_type, NexaDEQConfig)
        AutoModelForCausalLM.register(NexaDEQConfig, NexaDEQForCausalLM)
    except ValueError as error:  # already registered in this process
        if "already" not in str(error):
            raise

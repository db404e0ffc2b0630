"""A selective state-space (Mamba) decoder in plain torch that computes what ``transformers``' MambaForCausalLM computes.

Kept independent of ``transformers`` (the teacher-free verification process cannot import it); a test pins
its logits to the HF implementation's. A prompt is scanned in fixed-size chunks with ``mambapy``'s parallel
scan, the state carried from chunk to chunk, so the cost grows linearly with its length; generation then
advances the state one token at a time (O(1) per token, no cache that grows).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from mambapy.pscan import pscan
from torch import nn

from nexus.files import spec_from_json
from nexus.llama import RMSNorm

SCAN_CHUNK = 128  # tokens per parallel scan: long enough to vectorise, short enough to stay in cache


@dataclass(frozen=True)
class MambaSpec:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    state_size: int
    time_step_rank: int
    conv_kernel: int
    num_hidden_layers: int
    layer_norm_epsilon: float
    use_bias: bool
    use_conv_bias: bool
    tie_word_embeddings: bool
    bos_token_id: int
    eos_token_id: int
    pad_token_id: int
    max_position_embeddings: int = 1 << 30  # a recurrent model has no context limit

    @classmethod
    def from_json(cls, config: dict) -> MambaSpec:
        return spec_from_json(cls, config, derived=("max_position_embeddings",))


class SSMState:
    """Per layer: the last ``conv_kernel - 1`` inputs of the causal convolution and the SSM state."""

    def __init__(self, n_layers: int):
        self.conv: list[torch.Tensor | None] = [None] * n_layers
        self.ssm: list[torch.Tensor | None] = [None] * n_layers


def selective_scan(x, dt, A, B, C, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """y_t = C_t · h_t with h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t, from ``state``; returns (y, last state).

    x, dt: [batch, T, inner]; A: [inner, N]; B, C: [batch, T, N]; state: [batch, inner, N].
    """
    outputs = []
    for start in range(0, x.shape[1], SCAN_CHUNK):
        part = slice(start, start + SCAN_CHUNK)
        dt_a = dt[:, part, :, None] * A  # [b, t, inner, N]
        inputs = dt[:, part, :, None] * B[:, part, None, :] * x[:, part, :, None]
        if inputs.shape[1] == 1:
            states = torch.exp(dt_a) * state[:, None] + inputs
        else:
            states = pscan(torch.exp(dt_a), inputs) + torch.exp(dt_a.cumsum(dim=1)) * state[:, None]
        outputs.append((states @ C[:, part, :, None]).squeeze(-1))
        state = states[:, -1]
    return torch.cat(outputs, dim=1), state


class MambaMixer(nn.Module):
    """Parameter names and shapes match HF's MambaMixer."""

    def __init__(self, spec: MambaSpec):
        super().__init__()
        inner, n = spec.intermediate_size, spec.state_size
        self.spec = spec
        self.in_proj = nn.Linear(spec.hidden_size, inner * 2, bias=spec.use_bias)
        self.conv1d = nn.Conv1d(inner, inner, spec.conv_kernel, groups=inner, bias=spec.use_conv_bias)
        self.x_proj = nn.Linear(inner, spec.time_step_rank + 2 * n, bias=False)
        self.dt_proj = nn.Linear(spec.time_step_rank, inner, bias=True)
        self.A_log = nn.Parameter(torch.zeros(inner, n))
        self.D = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, spec.hidden_size, bias=spec.use_bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, state: SSMState, layer: int) -> torch.Tensor:
        batch, length, _ = x.shape
        spec = self.spec
        keep = mask[:, :, None].to(x.dtype)
        hidden, gate = self.in_proj(x * keep).chunk(2, dim=-1)
        hidden = hidden.transpose(1, 2)  # [b, inner, T]
        past = state.conv[layer]
        if past is None:
            past = hidden.new_zeros(batch, spec.intermediate_size, spec.conv_kernel - 1)
        window = torch.cat([past, hidden], dim=-1)
        state.conv[layer] = window[:, :, window.shape[-1] - (spec.conv_kernel - 1):]
        hidden = F.silu(self.conv1d(window)).transpose(1, 2) * keep  # [b, T, inner]
        time_step, B, C = torch.split(self.x_proj(hidden), [spec.time_step_rank, spec.state_size, spec.state_size], dim=-1)
        dt = F.softplus(self.dt_proj(time_step))
        ssm = state.ssm[layer]
        if ssm is None:
            ssm = hidden.new_zeros(batch, spec.intermediate_size, spec.state_size, dtype=torch.float32)
        A = -torch.exp(self.A_log.float())
        y, state.ssm[layer] = selective_scan(hidden.float(), dt.float(), A, B.float(), C.float(), ssm)
        y = (y.to(x.dtype) + hidden * self.D) * F.silu(gate)
        return self.out_proj(y)


class MambaBlock(nn.Module):
    def __init__(self, spec: MambaSpec):
        super().__init__()
        self.norm = RMSNorm(spec.hidden_size, spec.layer_norm_epsilon)
        self.mixer = MambaMixer(spec)

    def forward(self, x, mask, state, layer):
        return x + self.mixer(self.norm(x), mask, state, layer)


class MambaBody(nn.Module):
    def __init__(self, spec: MambaSpec):
        super().__init__()
        self.embeddings = nn.Embedding(spec.vocab_size, spec.hidden_size)
        self.layers = nn.ModuleList(MambaBlock(spec) for _ in range(spec.num_hidden_layers))
        self.norm_f = RMSNorm(spec.hidden_size, spec.layer_norm_epsilon)


class MambaDecoder(nn.Module):
    """Parameter names match HF's MambaForCausalLM (``backbone.*``, ``lm_head``), so its state_dict loads unchanged."""

    def __init__(self, spec: MambaSpec):
        super().__init__()
        self.spec = spec
        self.backbone = MambaBody(spec)
        self.lm_head = nn.Linear(spec.hidden_size, spec.vocab_size, bias=False)
        if spec.tie_word_embeddings:
            self.lm_head.weight = self.backbone.embeddings.weight
        self.requires_grad_(False)

    def new_cache(self) -> SSMState:
        return SSMState(self.spec.num_hidden_layers)

    def adaptable_modules(self) -> dict:
        return {}  # LoRA adapters are Llama-only in this runtime

    def set_active_adapter(self, name: str | None) -> None:
        return None

    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                cache: SSMState | None = None) -> torch.Tensor:
        """Logits for ``input_ids`` [batch, new], continuing from ``cache``'s state (which it updates).

        Left-padding positions (``attention_mask`` 0) are zeroed before the convolution and the scan, so
        they leave the state exactly as a zero start would: a padded prompt gives its unpadded logits.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
        state = cache if cache is not None else self.new_cache()
        x = self.backbone.embeddings(input_ids)
        for index, layer in enumerate(self.backbone.layers):
            x = layer(x, attention_mask, state, index)
        return self.lm_head(self.backbone.norm_f(x))

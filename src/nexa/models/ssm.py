"""The ``ssm`` student: transformers' MambaForCausalLM (selective state space, no attention), sized by a few numbers.

Training runs HF's model with ``mambapy``'s parallel scan (the CPU fallback without it is a Python loop
over tokens); the runtime twin is ``nexus.ssm``, whose logits a test pins to these.
"""

from __future__ import annotations

from transformers import MambaConfig, MambaForCausalLM



def build_ssm(vocab_size: int, hidden_size: int = 64, num_hidden_layers: int = 3, state_size: int = 16,
              expand: int = 2, conv_kernel: int = 4, time_step_rank: int | None = None) -> MambaForCausalLM:
    """A freshly initialised Mamba decoder (the caller seeds torch and sets the tokenizer's special ids)."""
    config = MambaConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                         state_size=state_size, expand=expand, conv_kernel=conv_kernel,
                         time_step_rank=time_step_rank or "auto", use_mambapy=True, tie_word_embeddings=True)
    return MambaForCausalLM(config)

"""Model configs the lab builds from scratch (no hub): Llama-style decoders sized by a few numbers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from transformers import LlamaConfig, LlamaForCausalLM

from nexa.train.tokenizer import SpecialIds


class DecoderSize(BaseModel):
    """The few numbers that size a Llama-style decoder; the rest follow from them."""

    model_config = ConfigDict(extra="forbid")

    hidden_size: int = Field(128, ge=8)
    num_hidden_layers: int = Field(4, ge=1)
    num_attention_heads: int = Field(4, ge=1)
    num_key_value_heads: int | None = None
    intermediate_size: int | None = None
    max_position_embeddings: int = 128

    def to_config(self, vocab_size: int, specials: SpecialIds) -> LlamaConfig:
        """The Llama config; special ids are the tokenizer's own."""
        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size or self.hidden_size * 3,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads or self.num_attention_heads,
            max_position_embeddings=self.max_position_embeddings,
            **specials.as_config(),
            tie_word_embeddings=True,
        )


def build_model(size: DecoderSize, vocab_size: int, seed: int, specials: SpecialIds) -> LlamaForCausalLM:
    """A freshly initialised model; the seed fixes the initial weights."""
    import torch

    torch.manual_seed(seed)
    return LlamaForCausalLM(size.to_config(vocab_size, specials))


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())

"""A tiny random Llama "teacher" with a char tokenizer and capability rows, for NIWT tests (no training)."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from nexa.data.generators import generate
from nexa.train.tokenizer import train_char_tokenizer

CAPABILITIES = ["reasoning", "science"]


@pytest.fixture(scope="session")
def rows():
    out = []
    for capability in CAPABILITIES:
        out += generate(capability, 120, seed=42)
    return out


@pytest.fixture(scope="session")
def tokenizer(rows):
    return train_char_tokenizer([r["prompt"] + r["answer"] for r in rows])


@pytest.fixture(scope="session")
def teacher(tokenizer):
    torch.manual_seed(42)
    config = LlamaConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, intermediate_size=96, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128, pad_token_id=0,
                         bos_token_id=1, eos_token_id=2, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    model.config._attn_implementation = "eager"
    return model.eval()

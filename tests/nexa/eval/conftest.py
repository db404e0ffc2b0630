"""Fixtures of the eval tests: a fresh lab and a tiny random checkpoint (char tokenizer, 2-layer Llama)."""

from __future__ import annotations

import pytest

from nexa.data.generators import generate
from nexa.ledger import Lab
from nexa.train.models import DecoderSize, build_model
from nexa.train.tokenizer import char_special_ids, save_char_tokenizer, train_char_tokenizer


@pytest.fixture
def lab(tmp_path) -> Lab:
    return Lab.init(tmp_path / "lab")


@pytest.fixture
def tiny_model(tmp_path):
    """A random 2-layer model saved the way the lab saves checkpoints (weights + tokenizer.json)."""
    texts = [r["prompt"] + r["answer"] for cap in ("reasoning", "science", "chemistry") for r in generate(cap, 300, seed=1)]
    tokenizer = train_char_tokenizer(texts)
    model = build_model(DecoderSize(hidden_size=32, num_hidden_layers=2, num_attention_heads=4), tokenizer.get_vocab_size(), seed=42, specials=char_special_ids(tokenizer))
    folder = tmp_path / "ckpt" / "student_x"
    model.save_pretrained(folder)
    save_char_tokenizer(tokenizer, folder)
    return folder

"""A tiny real bundle (random Llama backbone, char tokenizer, trained router, one LoRA adapter) and apps serving it."""

from __future__ import annotations

import pytest
import torch
from fastapi.testclient import TestClient
from serve_token import TOKEN
from tiny_bundle import write_tiny_bundle

from nexa.serve.app import create_app
from nexa.train.models import DecoderSize, build_model
from nexa.train.tokenizer import char_special_ids, save_char_tokenizer, train_char_tokenizer

PROMPTS = {"reasoning": [f"max({a},{b})=" for a in range(10) for b in range(0, 50, 7)],
           "science": [f"{v} km in m?" for v in range(1, 60)]}
ANSWERS = [f"max({a},{b})={max(a, b)}" for a in range(10) for b in range(0, 50, 7)] + \
          [f"{v} km in m?{v * 1000}" for v in range(1, 60)]
CONTEXT = 64
CAP = 40


@pytest.fixture(scope="session")
def bundle(tmp_path_factory):
    """A bundle named "tiny" with capabilities reasoning and science (science has an adapter), context 64."""
    root = tmp_path_factory.mktemp("serve_bundle")
    tokenizer = train_char_tokenizer(ANSWERS)
    _briefly_trained(tokenizer).save_pretrained(root / "student")
    save_char_tokenizer(tokenizer, root)
    return write_tiny_bundle(root / "bundle", root / "student", root / "tokenizer.json", PROMPTS,
                             {"model.layers.0.self_attn.q_proj": ((4, 32), (32, 4))},
                             retention={"reasoning": 0.99, "science": 1.0}, generation={"max_new_tokens": 6})


def _briefly_trained(tokenizer):
    """40 full-batch steps (about 3 s on one thread): enough that answers are varied digits, not one repeated
    character, so stop strings, streaming pieces and adapter switches are really exercised."""
    size = DecoderSize(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=CONTEXT)
    model = build_model(size, tokenizer.get_vocab_size(), seed=42, specials=char_special_ids(tokenizer))
    encoded = [tokenizer.encode(text).ids + [2] for text in ANSWERS]  # EOS = 2
    longest = max(len(ids) for ids in encoded)
    input_ids = torch.tensor([ids + [0] * (longest - len(ids)) for ids in encoded])
    labels = input_ids.masked_fill(input_ids == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(42)
    try:
        for _ in range(40):
            model(input_ids=input_ids, attention_mask=(input_ids != 0).long(), labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


@pytest.fixture(scope="module")
def client(bundle):
    """An open server (no token) with a small max_tokens cap and body limit."""
    with TestClient(create_app(bundle, max_tokens_cap=CAP, max_body_bytes=4096)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def secured(bundle):
    """A server that wants ``Authorization: Bearer TOKEN``."""
    with TestClient(create_app(bundle, token=TOKEN)) as test_client:
        yield test_client

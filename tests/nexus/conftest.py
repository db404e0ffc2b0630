"""A tiny real bundle (random Llama backbone, char tokenizer, trained router, one LoRA adapter) for runtime tests."""

import pytest
from tiny_bundle import write_tiny_bundle

from nexa.train.models import DecoderSize, build_model
from nexa.train.tokenizer import char_special_ids, save_char_tokenizer, train_char_tokenizer

PROMPTS = {"reasoning": [f"max({a},{b})=" for a in range(10) for b in range(0, 50, 7)],
           "science": [f"{v} km in m?" for v in range(1, 60)]}


@pytest.fixture
def hf_student(tmp_path):
    tokenizer = train_char_tokenizer([p for ps in PROMPTS.values() for p in ps])
    model = build_model(DecoderSize(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2),
                        tokenizer.get_vocab_size(), seed=42, specials=char_special_ids(tokenizer)).eval()
    model.save_pretrained(tmp_path / "student")
    save_char_tokenizer(tokenizer, tmp_path)
    return model, tokenizer, tmp_path


@pytest.fixture
def bundle(hf_student):
    model, tokenizer, root = hf_student
    return write_tiny_bundle(root / "bundle", root / "student", root / "tokenizer.json", PROMPTS,
                             {"model.layers.0.self_attn.q_proj": ((4, 32), (32, 4)),
                              "model.layers.1.mlp.down_proj": ((4, 96), (32, 4))},
                             generation={"max_new_tokens": 6})


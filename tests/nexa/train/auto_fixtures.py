"""A tiny lab for Nexa Auto's terminal tests: a 2-layer random-init Llama with a char tokenizer and a QA file."""

from __future__ import annotations

import json
from pathlib import Path

QA_ROWS = [{"prompt": f"max({a},{b})=", "answer": str(max(a, b)), "capability": "reasoning"}
           for a in range(1, 5) for b in range(2, 5)]


def tiny_model(folder: Path) -> Path:
    """A save_pretrained folder (config.json, model.safetensors, tokenizer.json) small enough to train in seconds."""
    import torch

    from nexa.train.models import DecoderSize, build_model
    from nexa.train.tokenizer import char_special_ids, save_char_tokenizer, train_char_tokenizer

    torch.set_num_threads(1)
    tokenizer = train_char_tokenizer([r["prompt"] + r["answer"] for r in QA_ROWS])
    model = build_model(DecoderSize(hidden_size=32, num_hidden_layers=2, num_attention_heads=2), tokenizer.get_vocab_size(), 42,
                        char_special_ids(tokenizer))
    model.save_pretrained(folder, safe_serialization=True)
    save_char_tokenizer(tokenizer, folder)  # tokenizer.json + tokenizer_config.json with its special tokens
    return folder


def qa_file(path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in QA_ROWS))
    return path

"""Tiny training labs and configs shared by the training tests (a plain module: test files import it by name)."""

from __future__ import annotations

from pathlib import Path

import yaml

from nexa.data.generators import generate
from nexa.ledger.datasets import write_dataset_version
from nexa.ledger import Lab
from nexa.train.tokenizer import save_char_tokenizer, train_char_tokenizer

TINY_MODEL = {"size": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 64}}


def make_lab(root: Path, rows: int = 200) -> Lab:
    """A lab holding `tiny-reasoning@v1` (train split) and a tokenizer.json at <lab>/tokenizer.json."""
    lab = Lab.init(root)
    data = [{**r, "split": "train"} for r in generate("reasoning", rows, seed=42)]
    write_dataset_version(lab, "tiny-reasoning", data, row_schema="qa")
    save_char_tokenizer(train_char_tokenizer(r["prompt"] + r["answer"] for r in data), lab.root)
    return lab


def write_config(lab: Lab, name: str = "tiny", **sections) -> Path:
    """A tiny training config in the lab; keyword sections replace the defaults."""
    config = {
        "name": name,
        "seed": 42,
        "method": "sft",
        "model": TINY_MODEL,
        "data": {"train": ["tiny-reasoning@v1"], "tokenizer": "tokenizer.json", "seq_len": 64},
        "optim": {"max_steps": 20, "batch_size": 8, "learning_rate": 0.003, "warmup_steps": 2, "logging_steps": 2},
        "tracking": {"wandb": "disabled"},
    }
    config.update(sections)
    path = lab.root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path

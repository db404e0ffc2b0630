"""A tiny lab for Nexa Auto's terminal tests: a 2-layer random-init Llama with a char tokenizer and a QA file."""

from __future__ import annotations

import json
import os
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


class Transcript:
    """pexpect's logfile: everything the program put on the screen."""

    def __init__(self):
        self.parts: list[str] = []

    def write(self, data: str) -> None:
        self.parts.append(data)

    def flush(self) -> None:
        pass

    @property
    def text(self) -> str:
        return "".join(self.parts)


def files_containing(token: str, roots: list[Path], since: float) -> list[str]:
    """Every regular file under ``roots`` changed since ``since`` whose bytes contain the token."""
    needle, found = token.encode(), []
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                path = Path(folder) / name
                try:
                    info = path.lstat()
                    if not path.is_file() or path.is_symlink() or info.st_mtime < since - 1 or info.st_size > 50 * 2**20:
                        continue
                    if needle in path.read_bytes():
                        found.append(str(path))
                except OSError:
                    continue
    return found


def niwt_world(root: Path) -> tuple[Path, Path]:
    """A 90-row reasoning QA file (enough to profile: 8 samples + 50 kept for verification after the splits)
    and a random-init 64-wide teacher whose char tokenizer covers it."""
    import torch

    from nexa.data.generators import generate
    from nexa.train.models import DecoderSize, build_model
    from nexa.train.tokenizer import char_special_ids, save_char_tokenizer, train_char_tokenizer

    torch.set_num_threads(1)
    rows = [{k: r[k] for k in ("prompt", "answer", "capability")} for r in generate("reasoning", 90, seed=42)]
    data = root / "reasoning.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tokenizer = train_char_tokenizer([r["prompt"] + r["answer"] for r in rows])
    teacher = root / "teacher"
    build_model(DecoderSize(hidden_size=64, num_hidden_layers=2, num_attention_heads=2), tokenizer.get_vocab_size(), 42,
                char_special_ids(tokenizer)).save_pretrained(teacher, safe_serialization=True)
    save_char_tokenizer(tokenizer, teacher)
    return teacher, data

"""Batched greedy generation for HF checkpoints, with latency per prompt, for exact-match evaluation."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM


@dataclass
class Generation:
    prompt: str
    output: str
    latency_ms: float
    new_tokens: int


def load_hf_model(model_dir: Path):
    """An HF checkpoint folder written by the lab (weights + tokenizer.json), in eval mode."""
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.eval()
    return model, Tokenizer.from_file(str(model_dir / "tokenizer.json"))


@torch.no_grad()
def greedy_generate(model, tokenizer: Tokenizer, prompts: list[str], max_new_tokens: int = 8,
                    batch_size: int = 64) -> list[Generation]:
    """Left-padded batches with the KV cache; each prompt's latency is its batch's time / batch size."""
    pad, eos = model.config.pad_token_id, model.config.eos_token_id
    results: list[Generation] = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        encoded = [tokenizer.encode(p).ids for p in batch]
        width = max(map(len, encoded))
        input_ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded])
        attention = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
        began = time.perf_counter()
        out = model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=pad, eos_token_id=eos)
        per_prompt_ms = (time.perf_counter() - began) * 1000 / len(batch)
        for prompt, row in zip(batch, out[:, width:].tolist()):
            tokens = row[: row.index(eos)] if eos in row else row
            tokens = [t for t in tokens if t != pad]
            results.append(Generation(prompt, tokenizer.decode(tokens), per_prompt_ms, len(tokens)))
    return results

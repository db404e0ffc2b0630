"""Batched greedy generation for HF checkpoints and nexus bundles, timed per prompt.

Two kinds of model are evaluated: a lab checkpoint folder (HF ``save_pretrained`` + ``tokenizer.json``)
and a teacher-free bundle, which is only ever run through the runtime ``nexus.NexusModel`` so the
scores are the ones a user of the bundle would see.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

from nexa.ledger.hashing import sha256_file, sha256_json


@dataclass
class Generation:
    prompt: str
    output: str
    latency_ms: float
    new_tokens: int
    confidence: float | None = None  # a gated bundle's calibrated confidence (nexa.eval.abstention); None otherwise
    abstained: bool = False  # the gate would abstain: ``output`` is still the student's own answer


class ModelNotFoundError(FileNotFoundError):
    """A model reference that is neither a checkpoint folder nor a bundle; the message says what was looked for."""


def model_kind(path: Path) -> str:
    """``bundle`` (manifest.json + backbone/), ``hf`` (config.json + tokenizer.json), else a clear error."""
    path = Path(path)
    if (path / "manifest.json").exists() and (path / "backbone").is_dir():
        return "bundle"
    if (path / "config.json").exists() and (path / "tokenizer.json").exists():
        return "hf"
    raise ModelNotFoundError(
        f"{path} is not a model: expected a nexus bundle (manifest.json, backbone/) or an HF checkpoint folder "
        "(config.json, *.safetensors and tokenizer.json)"
    )


def model_hash(path: Path) -> str:
    """Hash of every file that decides the model's outputs (weights, config, tokenizer, adapters, router)."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.endswith((".md", "report.json")))
    if not files:
        raise ModelNotFoundError(f"{path} holds no files to hash")
    return sha256_json({p.relative_to(path).as_posix(): sha256_file(p) for p in files})


def load_hf_model(model_dir: Path):
    """An HF checkpoint folder written by the lab (weights + tokenizer.json), in eval mode."""
    import nexa.models  # noqa: F401  (registers the nexa.models architectures with the Auto classes)

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


class Generator:
    """Loads a model on first use and generates greedily; one interface for checkpoints and bundles.

    Latency is measured the same way for both kinds, so the leaderboard's column compares models and
    not code paths: batches of ``batch_size`` prompts in the caller's order, each timed around the one
    call that generates it (routing and adapters included for bundles), after one untimed warm-up
    batch per model; a prompt's latency is its batch's time / the batch's size. Both kinds run in this
    process, so with the same torch thread count.
    """

    WARM_UP_PROMPTS = 8

    def __init__(self, path: Path, batch_size: int = 64):
        self.path = Path(path)
        self.kind = model_kind(self.path)
        self.batch_size = batch_size
        self._loaded = None
        self._warm = False

    def generate(self, prompts: list[str], max_new_tokens: int, capability: str | None = None) -> list[Generation]:
        if not prompts:
            return []
        if not self._warm:
            self._outputs(prompts[: self.WARM_UP_PROMPTS], max_new_tokens, capability)
            self._warm = True
        results: list[Generation] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = prompts[start : start + self.batch_size]
            began = time.perf_counter()
            outputs = self._outputs(batch, max_new_tokens, capability)
            per_prompt_ms = (time.perf_counter() - began) * 1000 / len(batch)
            results += [Generation(p, text, per_prompt_ms, tokens, confidence, abstained)
                        for p, (text, tokens, confidence, abstained) in zip(batch, outputs)]
        return results

    def _outputs(self, prompts: list[str], max_new_tokens: int,
                 capability: str | None) -> list[tuple[str, int, float | None, bool]]:
        """(text, new tokens, gate confidence, abstained) per prompt, generated as one batch."""
        if self._loaded is None:
            self._loaded = self._load()
        if self.kind == "hf":
            gens = greedy_generate(*self._loaded, prompts, max_new_tokens=max_new_tokens, batch_size=len(prompts))
            return [(g.output, g.new_tokens, None, False) for g in gens]
        outs = self._loaded.complete_batch(prompts, capability=capability, max_new_tokens=max_new_tokens,
                                           batch_size=len(prompts))
        return [(g.text, g.completion_tokens, g.confidence, g.abstained) for g in outs]

    def _load(self):
        if self.kind == "hf":
            return load_hf_model(self.path)
        from nexus import NexusModel

        model = NexusModel.load(self.path, device="cpu")
        if model.gate is not None:  # the eval scores the student's own answers: it never escalates (nexa.eval.abstention)
            model.gate = replace(model.gate, fallback_url=None)
        return model

"""Choosing a capability's adapter from the prompt text alone: hashed character n-grams and a linear layer.

The featurizer is deliberately tiny and dependency-free so the trainer (in ``nexa.niwt``) and the
runtime compute bit-identical features.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from nexus.errors import BundleError

FNV_OFFSET = 0x811C9DC5
FNV_PRIME = 0x01000193


def fnv1a_32(data: bytes) -> int:
    value = FNV_OFFSET
    for byte in data:
        value = ((value ^ byte) * FNV_PRIME) & 0xFFFFFFFF
    return value


def featurize(prompt: str, n_buckets: int, ngram_max: int) -> torch.Tensor:
    """L2-normalised counts of the lower-cased prompt's character n-grams (n = 1..ngram_max), hashed into buckets."""
    text = prompt.lower()
    counts = torch.zeros(n_buckets, dtype=torch.float32)
    for n in range(1, ngram_max + 1):
        for start in range(len(text) - n + 1):
            counts[fnv1a_32(text[start:start + n].encode("utf-8")) % n_buckets] += 1.0
    norm = counts.norm()
    return counts / norm if norm > 0 else counts


class Router:
    """A linear classifier over :func:`featurize` features; ``choose`` can be restricted to allowed capabilities."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, capabilities: list[str], n_buckets: int, ngram_max: int):
        if weight.shape != (len(capabilities), n_buckets) or bias.shape != (len(capabilities),):
            raise BundleError(f"router weight {tuple(weight.shape)} / bias {tuple(bias.shape)} do not match "
                              f"{len(capabilities)} capabilities x {n_buckets} buckets")
        self.weight, self.bias = weight.float(), bias.float()
        self.capabilities, self.n_buckets, self.ngram_max = capabilities, n_buckets, ngram_max

    @classmethod
    def load(cls, file: Path) -> Router:
        with safe_open(str(file), "pt") as handle:
            metadata = handle.metadata() or {}
            missing = {"weight", "bias"} - set(handle.keys())
            if missing:
                raise BundleError(f"{file}: router tensors {sorted(missing)} are missing")
            weight, bias = handle.get_tensor("weight"), handle.get_tensor("bias")
        if metadata.get("featurizer") != "char_ngram_hash":
            raise BundleError(f"{file}: featurizer {metadata.get('featurizer')!r} is not supported (expected 'char_ngram_hash')")
        try:
            capabilities = json.loads(metadata["capabilities"])
            n_buckets, ngram_max = int(metadata["n_buckets"]), int(metadata["ngram_max"])
        except (KeyError, ValueError) as error:
            raise BundleError(f"{file}: router metadata needs capabilities (JSON list), n_buckets and ngram_max: {error}") from error
        return cls(weight, bias, capabilities, n_buckets, ngram_max)

    def scores(self, prompt: str) -> dict[str, float]:
        logits = self.weight @ featurize(prompt, self.n_buckets, self.ngram_max) + self.bias
        return dict(zip(self.capabilities, logits.tolist()))

    def choose(self, prompt: str, allowed: set[str] | None = None) -> str:
        ranked = sorted(self.scores(prompt).items(), key=lambda item: -item[1])
        for capability, _ in ranked:
            if allowed is None or capability in allowed:
                return capability
        raise BundleError(f"the router knows none of the allowed capabilities {sorted(allowed or [])}")

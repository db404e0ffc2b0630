"""The router: a linear classifier over hashed character n-grams that picks a capability's adapter.

Its featurizer is the runtime's own (``nexus.router.featurize``), so what is trained here is exactly
what the bundle computes at inference.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from nexus.router import featurize
from safetensors.torch import save_file

DEFAULT_FEATURIZER = {"featurizer": "char_ngram_hash", "n_buckets": 2048, "ngram_max": 3}


def features(prompts: list[str], n_buckets: int, ngram_max: int) -> torch.Tensor:
    return torch.stack([featurize(p, n_buckets, ngram_max) for p in prompts])


def train_router(prompts: list[str], labels: list[str], capabilities: list[str], seed: int,
                 n_buckets: int = 2048, ngram_max: int = 3, epochs: int = 200, lr: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-batch softmax regression; returns (weight [n_caps, n_buckets], bias [n_caps])."""
    torch.manual_seed(seed)
    x = features(prompts, n_buckets, ngram_max)
    y = torch.tensor([capabilities.index(label) for label in labels])
    weight = torch.zeros(len(capabilities), n_buckets, requires_grad=True)
    bias = torch.zeros(len(capabilities), requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=lr * 0.1)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, y) + 1e-4 * weight.pow(2).sum()
        loss.backward()
        optimizer.step()
    return weight.detach(), bias.detach()


def router_accuracy(weight: torch.Tensor, bias: torch.Tensor, prompts: list[str], labels: list[str],
                    capabilities: list[str], n_buckets: int = 2048, ngram_max: int = 3) -> float:
    predicted = (features(prompts, n_buckets, ngram_max) @ weight.T + bias).argmax(-1).tolist()
    return sum(capabilities[p] == label for p, label in zip(predicted, labels)) / max(len(labels), 1)


def write_router(bundle: Path, weight: torch.Tensor, bias: torch.Tensor, capabilities: list[str], featurizer: dict) -> None:
    target = bundle / "router"
    target.mkdir(parents=True, exist_ok=True)
    metadata = {"capabilities": json.dumps(capabilities), **{k: str(v) for k, v in featurizer.items()}}
    save_file({"weight": weight.contiguous(), "bias": bias.contiguous()}, str(target / "router.safetensors"), metadata=metadata)

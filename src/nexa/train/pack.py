"""Packing: tokenized examples into fixed-length blocks by best-fit decreasing, never attending across them.

Each example keeps its own position ids (restarting at 0), which is how transformers' attention masks
detect packed sequences; the tail of a block is padding with labels -100. Efficiency = non-pad
tokens / all tokens is recorded so the cost of padding is visible.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict
from safetensors.torch import load_file, save_file

from nexa.train.tokenizer import PAD_ID

PACK_VERSION = 1


class PackManifest(BaseModel):
    """``pack.json``: how a pack was made and how full its blocks are."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = PACK_VERSION
    algorithm: str = "best-fit-decreasing"
    seq_len: int
    samples: int
    blocks: int
    tokens: int
    efficiency: float
    sources: list[str]
    tokenizer_sha256: str
    truncated: int = 0


@dataclass
class Packed:
    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def best_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices of items per bin: longest first, each into the fullest bin it still fits in."""
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # sorted (free space, bin index)
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        size = lengths[index]
        slot = bisect.bisect_left(free, (size, -1))
        if slot < len(free):
            space, bin_index = free.pop(slot)
        else:
            bins.append([])
            space, bin_index = capacity, len(bins) - 1
        bins[bin_index].append(index)
        if space - size > 0:
            bisect.insort(free, (space - size, bin_index))
    return bins


def pack_examples(examples: list[tuple[list[int], list[int]]], seq_len: int) -> tuple[Packed, int]:
    """Pack (ids, labels) pairs; examples longer than a block are truncated and counted."""
    truncated = sum(len(ids) > seq_len for ids, _ in examples)
    examples = [(ids[:seq_len], labels[:seq_len]) for ids, labels in examples]
    bins = best_fit_decreasing([len(ids) for ids, _ in examples], seq_len)
    rows = [_block([examples[i] for i in members], seq_len) for members in bins]
    packed = Packed(*(torch.tensor([r[k] for r in rows], dtype=torch.long) for k in range(3)))
    return packed, truncated


def _block(members: list[tuple[list[int], list[int]]], seq_len: int) -> tuple[list[int], list[int], list[int]]:
    ids, labels, positions = [], [], []
    for sample_ids, sample_labels in members:
        ids += sample_ids
        labels += sample_labels
        positions += list(range(len(sample_ids)))
    pad = seq_len - len(ids)
    return ids + [PAD_ID] * pad, labels + [-100] * pad, positions + list(range(pad))


def efficiency(packed: Packed) -> float:
    real = sum(int((row != PAD_ID).sum()) for row in packed.input_ids)
    return real / packed.input_ids.numel()


def save_pack(packed: Packed, manifest: PackManifest, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file(
        {"input_ids": packed.input_ids.to(torch.int32), "labels": packed.labels.to(torch.int32),
         "position_ids": packed.position_ids.to(torch.int32)},
        str(folder / "pack.safetensors"),
    )
    (folder / "pack.json").write_text(manifest.model_dump_json(indent=2))


def load_pack(folder: Path) -> tuple[Packed, PackManifest]:
    tensors = load_file(str(folder / "pack.safetensors"))
    manifest = PackManifest.model_validate(json.loads((folder / "pack.json").read_text()))
    return Packed(*(tensors[k].long() for k in ("input_ids", "labels", "position_ids"))), manifest

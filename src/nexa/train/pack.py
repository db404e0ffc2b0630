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
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file, save_file

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
    padding_efficiency: float | None = Field(None, description="What padding every sample to seq_len would give, for comparison.")
    topk: int = Field(0, description="Teacher top-k logprobs stored per supervised token (offline KD); 0 = none.")
    quarantined: int = Field(0, description="Rows left out (see quarantine.jsonl beside the pack).")
    created_by: str | None = Field(None, description="run_id of the run that packed it.")


@dataclass
class Packed:
    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor
    topk_ids: torch.Tensor | None = None  # [blocks, seq_len, k]: teacher's top-k ids for the token at each position
    topk_logprobs: torch.Tensor | None = None
    real_tokens: int | None = None  # non-pad tokens, known when packed (PAD may equal EOS, so ids cannot tell)
    teacher: dict[str, torch.Tensor] | None = None  # the same samples in the teacher's tokens (cross-tokenizer KD)

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


def pack_examples(examples: list[tuple], seq_len: int, pad_id: int) -> tuple[Packed, int]:
    """Pack (ids, labels) pairs; examples longer than a block are truncated and counted.

    Block tails are filled with ``pad_id``, the tokenizer's own PAD (labels -100 there).

    An example may carry two more per-token lists, the teacher's top-k ids and logprobs (offline KD);
    they travel with their tokens into the same block positions.
    """
    truncated = sum(len(ex[0]) > seq_len for ex in examples)
    examples = [tuple(part[:seq_len] for part in ex) for ex in examples]
    bins = best_fit_decreasing([len(ex[0]) for ex in examples], seq_len)
    rows = [_block([examples[i][:2] for i in members], seq_len, pad_id) for members in bins]
    packed = Packed(*(torch.tensor([r[k] for r in rows], dtype=torch.long) for k in range(3)))
    packed.real_tokens = sum(len(ex[0]) for ex in examples)
    if examples and len(examples[0]) == 4:
        k = len(examples[0][2][0]) if examples[0][2] else 0
        packed.topk_ids = torch.tensor([_topk_block([examples[i][2] for i in m], seq_len, k, 0) for m in bins], dtype=torch.long)
        packed.topk_logprobs = torch.tensor([_topk_block([examples[i][3] for i in m], seq_len, k, 0.0) for m in bins])
    return packed, truncated


def _topk_block(parts: list[list[list]], seq_len: int, k: int, fill) -> list[list]:
    flat = [row for part in parts for row in part]
    return flat + [[fill] * k for _ in range(seq_len - len(flat))]


def _block(members: list[tuple[list[int], list[int]]], seq_len: int, pad_id: int) -> tuple[list[int], list[int], list[int]]:
    ids, labels, positions = [], [], []
    for sample_ids, sample_labels in members:
        ids += sample_ids
        labels += sample_labels
        positions += list(range(len(sample_ids)))
    pad = seq_len - len(ids)
    return ids + [pad_id] * pad, labels + [-100] * pad, positions + list(range(pad))


def efficiency(packed: Packed) -> float:
    """Non-pad share of all block tokens."""
    return packed.real_tokens / packed.input_ids.numel()


def padding_efficiency(lengths: list[int], seq_len: int) -> float:
    """Non-pad share if every sample were padded to ``seq_len`` on its own (the naive alternative)."""
    return sum(min(n, seq_len) for n in lengths) / (len(lengths) * seq_len) if lengths else 0.0


def save_pack(packed: Packed, manifest: PackManifest, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {"input_ids": packed.input_ids.to(torch.int32), "labels": packed.labels.to(torch.int32),
               "position_ids": packed.position_ids.to(torch.int32)}
    if packed.topk_ids is not None:
        tensors.update(topk_ids=packed.topk_ids.to(torch.int32), topk_logprobs=packed.topk_logprobs.float())
    save_file(tensors, str(folder / "pack.safetensors"))
    (folder / "pack.json").write_text(manifest.model_dump_json(indent=2))


def load_pack(folder: Path) -> tuple[Packed, PackManifest]:
    tensors = load_file(str(folder / "pack.safetensors"))
    manifest = PackManifest.model_validate(json.loads((folder / "pack.json").read_text()))
    packed = Packed(*(tensors[k].long() for k in ("input_ids", "labels", "position_ids")))
    if "topk_ids" in tensors:
        packed.topk_ids, packed.topk_logprobs = tensors["topk_ids"].long(), tensors["topk_logprobs"].float()
    return packed, manifest

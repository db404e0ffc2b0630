"""The split's kernels (issue 20: chunked, threaded, bytes shared) against plain references, and a pinned end-to-end output.

Each vectorised piece must give exactly what a plain loop gives, whatever the chunking and the number of
worker threads, so a version's splits (and so its content hash) never depend on how fast it was made.
"""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest
from data_rows import qa, write_jsonl

from nexa.data import dedup, splits
from nexa.data.dedup import NearDedup, TextBytes, band_keys, candidate_pairs, screened_similarity, sketch_similarity, text_buffers
from nexa.data.splits import text_buckets

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
MASK32, GOLDEN32 = (1 << 32) - 1, 0x9E3779B1


def _finalise(x: int, rounds: tuple[tuple[int, int], ...], last_shift: int, mask: int) -> int:
    """Plain-Python xorshift-multiply finaliser, the reference for the numpy ones."""
    for shift, factor in rounds:
        x ^= x >> shift
        x = (x * factor) & mask
    return x ^ (x >> last_shift)


def _mix(x: int) -> int:  # splitmix64's
    return _finalise(x, ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)), 31, MASK)


def _bucket(text: str | None) -> float:
    """text_buckets' definition, one row in plain Python: 8-byte words mixed with their index, summed, mixed with the length."""
    raw = (text or "").encode("utf-8")
    total = 0
    for k in range(0, len(raw), 8):
        total = (total + _mix(int.from_bytes(raw[k:k + 8], "little") ^ ((k // 8) * GOLDEN & MASK))) & MASK
    return (_mix(total ^ _mix(len(raw))) >> 11) * 2.0 ** -53


def _texts(n: int, seed: int = 42) -> list[str | None]:
    rng = random.Random(seed)
    alphabet = "abc é€𝄞xyz0123456789 "
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(n)]
    texts[3], texts[7] = None, ""
    return texts


def _chunked(texts: list[str | None], cuts: list[int]) -> pa.ChunkedArray:
    whole = pa.array(["pad"] + texts + ["pad"], pa.string()).slice(1, len(texts))  # sliced: offsets that do not start at 0
    bounds = [0, *cuts, len(texts)]
    return pa.chunked_array([whole.slice(a, b - a) for a, b in zip(bounds, bounds[1:])], pa.string())


def test_text_buckets_equal_the_plain_definition_across_chunks_and_threads(monkeypatch):
    texts = _texts(300)
    expected = [_bucket(t) for t in texts]
    monkeypatch.setattr(splits, "BUCKET_CHUNK_WORDS", 7)  # many chunks, rows split nowhere
    assert text_buckets(_chunked(texts, [1, 100, 101, 250])).tolist() == expected
    assert text_buckets(text_buffers(pa.array(texts, pa.string()))).tolist() == expected
    assert text_buckets(pa.array([], pa.string())).tolist() == []


def test_text_bytes_of_chunks_equal_those_of_the_combined_column():
    texts = _texts(120)
    chunked = text_buffers(_chunked(texts, [0, 5, 60]))
    offsets, data = text_buffers(pa.array([t or "" for t in texts], pa.string()))
    assert isinstance(chunked, TextBytes) and len(chunked) == len(texts)
    assert chunked.offsets.tolist() == offsets.tolist() and bytes(chunked.data) == bytes(data)
    assert bytes(data[-8:]) == bytes(8) and text_buffers(chunked) is chunked


def _sentences(n: int) -> list[str]:
    rng = random.Random(7)
    words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike".split()
    base = [" ".join(rng.choice(words) for _ in range(rng.randint(5, 12))) for _ in range(n)]
    return base + [t + " " + rng.choice(words) for t in base[: n // 3]] + ["", "ab", "abcd"]


def test_minhash_and_clusters_are_the_same_from_text_bytes_chunks_or_one_array():
    texts = _sentences(400)
    whole = pa.array(texts, pa.string())
    keys, sketch = band_keys(whole, 128, 5, 1, 14, 9)
    for source in (text_buffers(whole), _chunked(texts, [10, 200])):
        other_keys, other_sketch = band_keys(source, 128, 5, 1, 14, 9, chunk_windows=500)
        assert np.array_equal(keys, other_keys) and np.array_equal(sketch, other_sketch)
    near = NearDedup(threshold=0.8)
    clusters = near.clusters(whole, confirm=False)
    assert np.array_equal(near.clusters(text_buffers(whole), confirm=False), clusters)
    assert (clusters != np.arange(len(texts))).sum() >= 50  # the appended-word copies joined their originals
    with pytest.raises(TypeError, match="Arrow"):
        near.clusters(text_buffers(whole), confirm=True)


def _pairs_reference(keys: np.ndarray) -> set[tuple[int, int]]:
    """candidate_pairs' definition: per band, rows sorted by (key's top bits, row), each paired with its predecessor in a bucket."""
    n = len(keys)
    bits = max(1, int(n - 1).bit_length())
    pairs = set()
    for band in range(keys.shape[1]):
        order = sorted(range(n), key=lambda r: (int(keys[r, band]) >> bits, r))
        for x, y in zip(order, order[1:]):
            if int(keys[x, band]) >> bits == int(keys[y, band]) >> bits:
                pairs.add((min(x, y), max(x, y)))
    return pairs


def test_candidate_pairs_and_the_screen_equal_plain_loops_on_one_or_two_threads(monkeypatch):
    keys, sketch = band_keys(pa.array(_sentences(300), pa.string()), 128, 5, 1, 14, 9)
    first, second = candidate_pairs(keys)
    assert set(zip(first.tolist(), second.tolist())) == _pairs_reference(keys)
    assert np.all(first * len(keys) + second == np.sort(first * len(keys) + second))

    def plain(a: np.ndarray, b: np.ndarray) -> float:
        filled = [(x != 0xFF) or (y != 0xFF) for x, y in zip(a.tolist(), b.tolist())]
        agree = [x == y and f for x, y, f in zip(a.tolist(), b.tolist(), filled)]
        return sum(agree) / max(1, sum(filled))

    expected = [plain(sketch[a], sketch[b]) if plain(sketch[a, :32], sketch[b, :32]) >= 0.8 - 0.25 else 0.0
                for a, b in zip(first.tolist(), second.tolist())]
    assert screened_similarity(sketch, first, second, 0.8, block=37).tolist() == expected
    monkeypatch.setattr(dedup, "ordered_map", lambda function, items: map(function, items))  # one thread
    assert screened_similarity(sketch, first, second, 0.8, block=37).tolist() == expected
    assert candidate_pairs(keys)[0].tolist() == first.tolist()
    odd = sketch[:50, :13]  # a width the word-wise count does not take: the plain sum answers
    assert sketch_similarity(odd, odd[::-1].copy()).tolist() == [plain(x, y) for x, y in zip(odd, odd[::-1])]


# The version `nexa data prepare --filters exact` wrote for these rows with the code before issue 20's split
# kernels (main at 263ca27), when a cluster's split was the hash of its first row's text (text_buckets).
PINNED_HASH = "977e07c0804e1d307337eccbbbd5bc88bc24b85eaec93994abe7e54aebdc881b"
# Since the seventh session a cluster's split is drawn from its first row's MinHash signature digest (32-bit band keys).
PINNED_DIGEST_HASH = "6d8d20ebb72d87bf73ed98d7abf90bff42e7bacca4b855d7772e1487fa3d3fcf"
PINNED_DIGEST_SPLITS = {"test": 187, "train": 1611, "val": 204}


def test_prepare_writes_the_same_clusters_as_before_the_faster_split(lab, tmp_path):
    from nexa.data.prepare import text_columns, prepare
    from nexa.data.schema import load_schema
    from nexa.data.splits import DEFAULT_FRACTIONS, assign_splits
    from nexa.ledger.datasets import read_dataset_table, table_content_hash

    texts = _sentences(1500)
    rows = [qa(t, str(i % 97)) for i, t in enumerate(texts)] + [qa(texts[5], "5"), '{"prompt": 1}']
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    result = prepare(lab, [str(path)], load_schema("qa"), "pinned", filters=["exact"])
    assert result.totals()["quarantined"] == 2 and result.totals()["removed"] == {"exact_dedup": 1}  # the empty prompt, the bad line
    assert result.manifest.splits == PINNED_DIGEST_SPLITS
    assert result.manifest.content_hash == PINNED_DIGEST_HASH
    # the same clusters as the code before: with the text hash as the split, they give the version it wrote
    written = read_dataset_table(lab, result.manifest.ref)
    clusters = NearDedup(threshold=0.8).clusters(text_columns(written, load_schema("qa"))[1], confirm=False)
    by_text = assign_splits(text_columns(written, load_schema("qa"))[1], clusters, DEFAULT_FRACTIONS)
    assert table_content_hash(written.set_column(written.column_names.index("split"), "split", by_text)) == PINNED_HASH
    exact_only = prepare(lab, [str(path)], load_schema("qa"), "pinned-exact", filters=["exact"], split_by="exact")
    assert exact_only.manifest.content_hash not in (PINNED_HASH, PINNED_DIGEST_HASH)  # the clusters decide some splits


def test_the_engine_asks_numpy_for_plain_pages_unless_told_otherwise(monkeypatch):
    from numpy._core.multiarray import _get_madvise_hugepage, _set_madvise_hugepage

    from nexa.data.runtime import use_engine_pool

    before = _get_madvise_hugepage()
    try:
        _set_madvise_hugepage(True)
        monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
        use_engine_pool()
        assert _get_madvise_hugepage() is True  # the user's choice stands
        monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE")
        use_engine_pool()
        assert _get_madvise_hugepage() is False
    finally:
        _set_madvise_hugepage(before)


def test_prepare_keeps_freed_memory_in_its_own_process_only_unless_the_user_chose(monkeypatch):
    import os
    import subprocess
    import sys

    from nexa.data.runtime import keep_freed_memory

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert keep_freed_memory() is False  # the user's choice stands (and this test process keeps glibc's defaults)
    code = "import sys; from nexa.data.runtime import keep_freed_memory; sys.exit(0 if keep_freed_memory() else 3)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == (0 if sys.platform.startswith("linux") else 3), done.stderr


def test_band_keys_of_all_empty_bands_follow_the_row_and_the_quarter_is_the_sketchs(monkeypatch):
    rng = np.random.default_rng(42)
    signature = rng.integers(0, 0xFFFFFFFE, size=(40, 128), dtype=np.uint64).astype(np.uint32)
    signature[3, 9:18] = 0xFFFFFFFF  # band 1 of row 3 empty
    signature[7, :] = 0xFFFFFFFF  # every band of row 7
    signature[11, 0:8] = 0xFFFFFFFF  # 8 of band 0's 9 bins: not empty
    salt = np.arange(100, 140, dtype=np.uint64)
    with np.errstate(over="ignore"):
        keys, digests = dedup._fold_bands(signature, 14, 9, salt)

    def fmix32(x: int) -> int:  # murmur3's
        return _finalise(x, ((16, 0x85EBCA6B), (13, 0xC2B2AE35)), 16, MASK32)

    def folded(row: int, band: int) -> int:
        acc = band + 1
        for v in signature[row, band * 9:(band + 1) * 9].tolist():
            acc = ((acc ^ int(v)) * GOLDEN32) & MASK32
        return fmix32(acc)

    def plain(row: int, band: int) -> int:
        if all(int(v) == 0xFFFFFFFF for v in signature[row, band * 9:(band + 1) * 9]):
            return fmix32((int(salt[row]) + band * GOLDEN32) & MASK32)
        return folded(row, band)

    def digest(row: int) -> int:  # every band's fold, empty or not: no row salt, so a function of the bins alone
        value = 0
        for band in range(14):
            value ^= folded(row, band)
        return _mix(value)

    assert keys.tolist() == [[plain(r, b) for b in range(14)] for r in range(40)]
    assert digests.tolist() == [digest(r) for r in range(40)]
    _, moved = dedup._fold_bands(signature, 14, 9, salt + np.uint64(7))  # the same bins at other rows
    assert moved.tolist() == digests.tolist()
    texts = pa.array(_sentences(300), pa.string())
    for one_thread in (False, True):
        if one_thread:
            monkeypatch.setattr(dedup, "ordered_map", lambda function, items: map(function, items))
        keys, sketch, quarter, digests = dedup._band_keys(texts, 128, 5, 1, 14, 9, chunk_windows=700, quarter=True)
        assert np.array_equal(quarter, sketch[:, :32]) and quarter.flags.c_contiguous
        reversed_texts = pa.array(texts.to_pylist()[::-1], pa.string())  # each text at another row, other chunks
        assert dedup._band_keys(reversed_texts, 128, 5, 1, 14, 9, chunk_windows=333).digests[::-1].tolist() == digests.tolist()
        first, second = candidate_pairs(keys)
        assert screened_similarity(sketch, first, second, 0.8, block=37, quarter=quarter).tolist() == \
            screened_similarity(sketch, first, second, 0.8, block=37).tolist()
    with pytest.raises(ValueError, match="quarter"):
        screened_similarity(sketch, first, second, 0.8, quarter=quarter[:, :16])


def test_the_sketch_keeps_each_bins_top_byte_and_only_an_empty_bin_reads_as_empty():
    signature = np.array([[0x12345678, 0xFF000000, 0xFFFFFFFE, 0xFFFFFFFF], [0, 0xFEFFFFFF, 0xFFFFFFFF, 0x80000000]], dtype=np.uint32)
    out = np.empty(signature.shape, dtype=np.uint8)
    dedup._top_byte(signature, out)
    assert out.tolist() == [[0x12, 0xFE, 0xFE, 0xFF], [0x00, 0xFE, 0xFF, 0x80]]
    a, b = out[:1], np.array([[0x12, 0xFE, 0x00, 0xFF]], dtype=np.uint8)
    assert sketch_similarity(a, b).tolist() == [2 / 3]  # bins filled in either: 3; equal and filled: 2

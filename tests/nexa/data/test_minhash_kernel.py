"""The compiled MinHash kernel (``nexa.data._minhash``) against the numpy kernel it replaces: the same output, bit for bit.

A version's splits are drawn from the MinHash digests, so a machine that built the kernel and one that did not
must write the same version from the same rows (the numpy kernel is itself held to the plain definition in
test_engine_kernels.py and test_split_kernels.py).
"""

from __future__ import annotations

import shutil
import sysconfig
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nexa.data import dedup

compiled = pytest.mark.skipif(dedup._minhash is None, reason="nexa.data._minhash is not built here (no C compiler or Python headers)")


@contextmanager
def numpy_kernel():
    """The numpy kernel, as on a machine where the extension was not built."""
    kernel = dedup._minhash
    dedup._minhash = None
    try:
        yield
    finally:
        dedup._minhash = kernel


def test_the_kernel_is_built_wherever_a_c_compiler_and_python_headers_are():
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if shutil.which(sysconfig.get_config_var("CC").split()[0] if sysconfig.get_config_var("CC") else "cc") is None or not headers.exists():
        pytest.skip("no C compiler or Python headers: the numpy kernel runs (setup.py builds the extension optionally)")
    assert dedup.MINHASH_KERNEL == "compiled", "rebuild it: pip install -e . (or make test, which reinstalls when the C source changes)"


TEXT = st.one_of(st.none(), st.text(alphabet="ab é\u4e2d𝄞", max_size=40), st.sampled_from(["", "a", "abcd", "abcde" * 9]))
SHAPES = st.sampled_from([(2, 1, 1), (2, 2, 1), (8, 2, 3), (64, 7, 9), (128, 14, 9), (128, 16, 8)])  # num_perm, bands, rows per band


@compiled
@settings(max_examples=80, deadline=None)
@given(st.lists(TEXT, min_size=1, max_size=40), st.integers(1, 8), SHAPES, st.integers(0, 2**32), st.booleans())
def test_band_keys_digests_and_sketches_equal_the_numpy_kernels(values, size, shape, seed, quarter):
    num_perm, bands, rows_per_band = shape
    texts = pa.array(values, pa.string())
    got = dedup._band_keys(texts, num_perm, size, seed, bands, rows_per_band, quarter=quarter)
    with numpy_kernel():
        expected = dedup._band_keys(texts, num_perm, size, seed, bands, rows_per_band, chunk_windows=17, quarter=quarter)
    assert got.keys.tolist() == expected.keys.tolist()
    assert got.digests.tolist() == expected.digests.tolist()
    assert got.sketch.tolist() == expected.sketch.tolist()
    assert (got.quarter is None) == (not quarter) and (not quarter or got.quarter.tolist() == expected.quarter.tolist())


def _sentences(n: int, seed: int = 42) -> list[str]:
    rng = np.random.default_rng(seed)
    words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima".split()
    base = [" ".join(rng.choice(words, size=rng.integers(4, 12))) for _ in range(n)]
    return base + [t + " mike" for t in base[: n // 3]]


@compiled
def test_the_kernel_equals_numpy_on_thousands_of_rows_whatever_the_spans(monkeypatch):
    texts = pa.array(_sentences(3000), pa.string())
    whole = dedup._band_keys(texts, 128, 5, 1, 14, 9, quarter=True)
    with numpy_kernel():
        reference = dedup._band_keys(texts, 128, 5, 1, 14, 9, quarter=True)
    monkeypatch.setattr(dedup, "COMPILED_SPAN_WINDOWS", 97)  # hundreds of spans, on the worker threads
    spans = dedup._band_keys(texts, 128, 5, 1, 14, 9, quarter=True)
    for got, one_span, expected in zip(spans, whole, reference):
        assert np.array_equal(got, expected) and np.array_equal(one_span, expected)
    assert (whole.sketch == 0xFE).sum() > 100 and (whole.sketch == 0xFF).sum() > 100  # both edge bytes of the sketch occur
    assert not whole.keys.flags.c_contiguous and whole.keys.T.flags.c_contiguous  # band-major, as candidate_pairs sorts it


@compiled
def test_the_screen_and_the_pair_filter_equal_the_numpy_ones():
    texts = pa.array(_sentences(2000), pa.string())
    signatures = dedup._band_keys(texts, 128, 5, 1, 14, 9, quarter=True)
    first, second = dedup.candidate_pairs(signatures.keys)
    assert len(first) > 500
    got = dedup.screened_similarity(signatures.sketch, first, second, 0.8, block=101, quarter=signatures.quarter)
    hopeful = dedup.quarter_agrees(signatures.quarter, 0.8 - dedup.SCREEN_SLACK, first, second)
    with numpy_kernel():
        assert got.tolist() == dedup.screened_similarity(signatures.sketch, first, second, 0.8, block=101).tolist()
        assert hopeful.tolist() == dedup.quarter_agrees(signatures.quarter, 0.8 - dedup.SCREEN_SLACK, first, second, block=77).tolist()
    assert 0 < hopeful.sum() < len(first)
    screen = (signatures.quarter, 0.8 - dedup.SCREEN_SLACK)
    kept_first, kept_second = dedup.candidate_pairs(signatures.keys, screen=screen)
    assert kept_first.tolist() == first[hopeful].tolist() and kept_second.tolist() == second[hopeful].tolist()
    with numpy_kernel():
        numpy_first, numpy_second = dedup.candidate_pairs(signatures.keys, screen=screen)
    assert numpy_first.tolist() == kept_first.tolist() and numpy_second.tolist() == kept_second.tolist()
    assert np.all(got[~hopeful] == 0)  # what the early filter drops, the screen zeroes: the same clusters either way


@compiled
def test_split_groups_and_dedup_clusters_equal_the_numpy_kernels():
    texts = pa.array(_sentences(2500, seed=7) + ["", None, "ab"], pa.string())
    near = dedup.NearDedup(threshold=0.8)
    clusters, digests = near.split_groups(texts)
    confirmed = near.clusters(texts)
    with numpy_kernel():
        expected_clusters, expected_digests = near.split_groups(texts)
        assert confirmed.tolist() == near.clusters(texts).tolist()
    assert clusters.tolist() == expected_clusters.tolist() and digests.tolist() == expected_digests.tolist()
    assert (clusters != np.arange(len(clusters))).sum() >= 500  # the copies with a word added joined their originals


@compiled
def test_the_kernel_refuses_buffers_that_do_not_fit_instead_of_reading_past_them():
    offsets, data = dedup.text_buffers(pa.array(["alpha bravo", "charlie"], pa.string()))
    keys, digests = np.empty((14, 2), np.uint32), np.empty(2, np.uint64)
    sketch, rough = np.empty((2, 128), np.uint8), np.empty((2, 32), np.uint8)
    args = (5, 3, 5, 128, 14, 9, 1, keys, digests, sketch, rough)
    dedup._minhash.rows(data, offsets, 0, 2, *args)
    with pytest.raises(ValueError, match="8 trailing zero bytes"):
        dedup._minhash.rows(data[:-8], offsets, 0, 2, *args)
    with pytest.raises(ValueError, match="out of the 2 rows"):
        dedup._minhash.rows(data, offsets, 0, 3, *args)
    with pytest.raises(ValueError, match="sketch holds"):
        dedup._minhash.rows(data, offsets, 0, 2, *args[:-2], sketch[:1], rough)
    with pytest.raises(ValueError, match="decrease"):
        dedup._minhash.rows(data, offsets[::-1].copy(), 0, 2, *args)
    with pytest.raises(ValueError, match="power of two"):
        dedup._minhash.rows(data, offsets, 0, 2, 5, 3, 5, 100, 14, 9, 1, keys, digests, sketch, rough)
    estimate = np.empty(1)
    with pytest.raises(IndexError, match="pair 0: row 0 or 2"):
        dedup._minhash.screen(sketch, 128, rough, 32, np.array([0]), np.array([2]), 0, 1, 0.5, estimate)
    with pytest.raises(ValueError, match="as long"):
        dedup._minhash.screen(sketch, 128, rough, 32, np.array([0]), np.array([1, 0]), 0, 1, 0.5, estimate)
    slots = np.empty(2, np.int64), np.empty(2, np.int64)
    same_key = np.array([5 << 32 | 1, 5 << 32 | 0], np.uint64)  # one key, rows out of order: not sorted
    with pytest.raises(ValueError, match="is it sorted"):
        dedup._minhash.band_pairs(same_key, rough, 32, 0.5, *slots)
    with pytest.raises(ValueError, match="is it sorted"):
        dedup._minhash.band_pairs(np.array([5 << 32 | 0, 5 << 32 | 7], np.uint64), rough, 32, 0.5, *slots)  # row 7 of 2
    assert dedup._minhash.band_pairs(np.sort(same_key), rough, 32, -1.0, *slots) == 1 and slots[0][0] == 0 and slots[1][0] == 1


def test_the_numpy_kernel_says_so_on_a_large_input_and_the_compiled_one_is_quiet(monkeypatch):
    import warnings

    texts = pa.array(_sentences(60), pa.string())
    monkeypatch.setattr(dedup, "SLOW_KERNEL_WARNING_ROWS", 50)
    with numpy_kernel(), pytest.warns(RuntimeWarning, match="not built when nexa was installed"):
        dedup._band_keys(texts, 128, 5, 1, 14, 9)
    if dedup._minhash is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            dedup._band_keys(texts, 128, 5, 1, 14, 9)


@compiled
@settings(max_examples=40, deadline=None)
@given(st.integers(1, 400), st.integers(1, 3000), st.integers(0, 2**32 - 1), st.sampled_from([-1.0, 0.0, 0.3, 0.6, 1.0]),
       st.booleans())
def test_screened_band_pairs_equal_numpys_whatever_the_collisions(rows, distinct_keys, seed, cutoff, shared_digits):
    """The radix sort by key keeps rows ascending within a key, as numpy's sort of (key, row) does, and
    orders by every bit of the key (``shared_digits``: distinct keys that agree on some 11-bit digits)."""
    rng = np.random.default_rng(seed)
    if shared_digits:
        digits = rng.choice(np.array([0, 1, 1023], np.uint64), size=(distinct_keys, 3))
        pool = digits[:, 0] | digits[:, 1] << np.uint64(11) | digits[:, 2] << np.uint64(22)
    else:
        pool = rng.integers(0, 2**32, size=distinct_keys, dtype=np.uint64)
    keys = rng.choice(pool, size=(rows, 3)).astype(np.uint32)
    quarter = rng.choice(np.array([0x10, 0x20, 0xFF], np.uint8), size=(rows, 4))
    got = dedup.candidate_pairs(keys, screen=(quarter, cutoff))
    with numpy_kernel():
        expected = dedup.candidate_pairs(keys, screen=(quarter, cutoff))
    assert got[0].tolist() == expected[0].tolist() and got[1].tolist() == expected[1].tolist()
    if cutoff <= 0:
        assert got[0].tolist() == dedup.candidate_pairs(keys)[0].tolist()  # nothing screened out

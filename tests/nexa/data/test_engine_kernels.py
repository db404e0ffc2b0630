"""The data engine's vectorised pieces against plain-Python references (derandomized property tests)."""

from __future__ import annotations

import json

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from nexa.data import loaders
from nexa.data.filters import first_occurrences, normalize
from nexa.data.runtime import ordered_map
from nexa.data.validate import _length_outside

ASCII_TEXT = st.text(st.sampled_from(list("abcXYZ 019.?  \t\n\r\x0b\x0c")), max_size=40)
ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


def _chunked(values: list, cut: int) -> pa.ChunkedArray:
    cut = min(cut, len(values))
    return pa.chunked_array([pa.array(values[:cut], pa.string()), pa.array(values[cut:], pa.string())])


@settings(max_examples=200, deadline=None)
@given(values=st.lists(ASCII_TEXT, max_size=30))
def test_normalize_is_lower_and_collapsed_ascii_whitespace(values):
    assert normalize(pa.array(values, pa.string())).to_pylist() == [" ".join(v.lower().split()) for v in values]


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.one_of(st.none(), ANY_TEXT), max_size=30), start=st.integers(0, 5))
def test_normalize_of_a_slice_matches_the_slice_of_normalize(values, start):
    array = pa.array(values, pa.string())
    assert normalize(array.slice(start)).to_pylist() == normalize(array).to_pylist()[start:]


@settings(max_examples=200, deadline=None)
@given(pool=st.lists(st.text("ab é", max_size=30), min_size=1, max_size=6),
       picks=st.lists(st.integers(0, 5), max_size=60), cut=st.integers(0, 60), nulls=st.booleans())
def test_first_occurrences_is_exact_first_wins(pool, picks, cut, nulls):
    values = [pool[i % len(pool)] for i in picks]
    if nulls:
        values = [None if i % 7 == 3 else v for i, v in enumerate(values)]
    seen, expected = set(), []
    for v in values:
        expected.append(v not in seen)
        seen.add(v)
    assert first_occurrences(pa.array(values, pa.string())).tolist() == expected
    assert first_occurrences(_chunked(values, cut)).tolist() == expected


def test_first_occurrences_tells_apart_strings_with_the_same_length_start_middle_and_end():
    a = "x" * 20 + "1" + "y" * 7 + "z" * 20
    b = "x" * 20 + "2" + "y" * 7 + "z" * 20  # same length, first/middle/last 8 bytes: only the full compare differs
    assert first_occurrences(pa.array([a, b, a, b, "short", "short"])).tolist() == [True, True, False, False, True, False]


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.one_of(st.none(), st.text(st.sampled_from(["a", "é", "€", "𝄞"]), max_size=12)), max_size=20),
       bound=st.integers(0, 6))
def test_length_bounds_count_characters(values, bound):
    array = pa.array(values, pa.string())
    assert _length_outside(array, bound, shorter=True).tolist() == [v is not None and len(v) < bound for v in values]
    assert _length_outside(array, bound, shorter=False).tolist() == [v is not None and len(v) > bound for v in values]


@settings(max_examples=50, deadline=None)
@given(lines=st.lists(st.text("ab{}\r", max_size=30), max_size=20), newline_at_end=st.booleans(), bom=st.booleans())
def test_blocks_never_split_a_line(tmp_path_factory, lines, newline_at_end, bom):
    path = tmp_path_factory.mktemp("blocks") / "f.jsonl"
    body = "\n".join(lines) + ("\n" if newline_at_end and lines else "")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + body.encode())
    saved, loaders.BLOCK_BYTES = loaders.BLOCK_BYTES, 8  # lines longer than a block, blocks of one short line
    try:
        blocks = list(loaders._blocks(path))
    finally:
        loaders.BLOCK_BYTES = saved
    assert all(block.endswith(b"\n") for block in blocks)
    assert b"".join(blocks).decode() == (body if body.endswith("\n") or not body else body + "\n")


def test_ordered_map_keeps_order_and_bounds_lookahead():
    started = []

    def work(i):
        started.append(i)
        return i * i

    results = []
    for i, value in enumerate(ordered_map(work, range(50), workers=3)):
        assert max(started) <= i + 3  # never more than `workers` items ahead of the consumer
        results.append(value)
    assert results == [i * i for i in range(50)]


def test_padded_lines_and_crlf_take_the_right_paths(tmp_path):
    from nexa.data.prepare import validate_inputs
    from nexa.data.schema import load_schema

    row = {"prompt": "p", "answer": "a", "capability": "c"}
    lines = [json.dumps({**row, "prompt": f"p{i}"}) for i in range(300)]
    lines[5] = "   " + lines[5] + "  "  # padded: per-line path, still good
    lines[9] = json.dumps({**row, "answer": 3})  # wrong type: per-line path, quarantined
    path = tmp_path / "mixed.jsonl"
    path.write_bytes("\r\n".join(lines).encode() + b"\r\n")
    result = validate_inputs([(str(path), path)], load_schema("qa"))
    assert result.table.num_rows == 299 and result.table.column("__line").to_pylist()[:6] == [1, 2, 3, 4, 5, 6]
    assert [(r["line"], r["field"]) for r in result.quarantine] == [(10, "answer")]
    raw, norm = result.text(load_schema("qa"))
    assert norm.to_pylist()[5] == "p5 a"


def _text_words(values: list[str | None]):
    import numpy as np

    from nexa.data.dedup import text_buffers

    offsets, data = text_buffers(pa.array(values, pa.string()))
    return np.ndarray((len(data) - 7,), dtype="<u8", buffer=data, strides=(1,)), offsets, np.diff(offsets)


def _windows(text: str | None, size: int) -> list[int]:
    """A text's shingles as little-endian integers: every ``size``-byte window, the whole text when shorter, 0 when empty."""
    raw = (text or "").encode("utf-8")
    return [int.from_bytes(raw[i:i + size], "little") for i in range(max(1, len(raw) - size + 1))]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(alphabet="ab é\u4e2d", max_size=12)), min_size=1, max_size=30), st.integers(1, 8))
def test_shingle_grams_are_each_rows_byte_grams_in_order(values, size):
    """The masked contiguous read, less the positions that start no shingle, is exactly each non-empty row's windows."""
    import numpy as np

    from nexa.data.dedup import _shingle_grams

    words, offsets, lengths = _text_words(values)
    grams, dead = _shingle_grams(words, offsets[:-1], lengths, size)
    assert len(grams) == offsets[-1] and len(set(dead.tolist())) == len(dead)
    assert np.delete(grams, dead).tolist() == [w for text in values if text for w in _windows(text, size)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(alphabet="ab é\u4e2d", max_size=14)), min_size=1, max_size=25),
       st.integers(1, 8), st.sampled_from([2, 8, 64]), st.integers(0, 2**32))
def test_one_permutation_minhash_equals_its_plain_definition(values, size, num_perm, seed):
    """Each row's bins: the smallest value hash of the shingles its bin hash sends there (empty: the marker)."""
    import numpy as np

    from nexa.data.dedup import _EMPTY32, _one_permutation, mix64

    words, offsets, lengths = _text_words(values)
    multipliers = mix64(np.array([seed, seed + 1], dtype=np.uint64)) | np.uint64(1)
    with np.errstate(over="ignore"):
        got = _one_permutation(words, offsets[:-1], lengths, size, multipliers, num_perm)
    m0, m1, bits, full = int(multipliers[0]), int(multipliers[1]), num_perm.bit_length() - 1, (1 << 64) - 1
    for text, row in zip(values, got.tolist()):
        expected = [int(_EMPTY32)] * num_perm
        for gram in _windows(text, size):
            slot = ((gram * m0) & full) >> (64 - bits)
            expected[slot] = min(expected[slot], min(((gram * m1) & full) >> 32, 0xFFFFFFFE))
        assert row == expected

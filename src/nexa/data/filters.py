"""Row filters: each has a name, a version and parameters, and reports which rows it removes and why.

Filters see the validated rows of a prepare as one Arrow table plus two text columns built from the
schema's text fields (``raw``, and ``norm``: lower-cased, whitespace collapsed), and return a keep
mask. The manifest records every filter's name, version, parameters and how many rows it removed.
Rows a filter removes for review (safety) are returned as ``flagged`` so they stay inspectable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nexa.data.rules import RULES, UnphysicalRule
from nexa.data.runtime import ordered_map
from nexa.data.validate import as_mask


@dataclass
class FilterInput:
    """What every filter reads: the rows, their joined text fields (raw and normalised) and the schema's name.

    ``raw`` and ``norm`` may come in chunks (one per loaded batch); a filter needing one array joins them.
    """

    table: pa.Table
    raw: pa.Array | pa.ChunkedArray
    norm: pa.Array | pa.ChunkedArray
    schema: str


@dataclass
class FilterResult:
    """The rows to keep; rows set aside for review with their reasons; near-duplicate cluster ids if found."""

    keep: np.ndarray
    flagged: list[dict[str, Any]] = field(default_factory=list)
    clusters: np.ndarray | None = None


class RowFilter(Protocol):
    name: str
    version: str

    def params(self) -> dict[str, Any]: ...

    def apply(self, rows: FilterInput) -> FilterResult: ...


def normalize(text: pa.Array) -> pa.Array:
    """Lower case, runs of ASCII whitespace to one space, trimmed: rows that differ only in spacing or case match.

    The whitespace rewrite runs only on the rows that need it, found with a few numpy passes over
    the string data (:func:`_messy_rows`); every other row is only lower-cased.
    """
    text = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
    if pa.types.is_large_string(text.type):
        text = text.cast(pa.string())
    data = _string_bytes(text)[1]
    ascii = len(data) == 0 or int(data.max()) < 128  # the UTF-8 kernels give the same result on ASCII, only slower
    lower = pc.ascii_lower(text) if ascii else pc.utf8_lower(text)
    messy = _messy_rows(lower)
    if not messy.any():
        return lower
    picked = lower.filter(pa.array(messy))
    trimmed = pc.ascii_trim_whitespace(picked) if ascii else pc.utf8_trim_whitespace(picked)
    words = pc.ascii_split_whitespace(trimmed) if ascii else pc.utf8_split_whitespace(trimmed)
    return pc.replace_with_mask(lower, pa.array(messy), pc.binary_join(words, pa.scalar(" ", pa.string())))


def _string_bytes(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A ``string`` array's offsets (rebased to 0) and the data bytes they span, as numpy views (no copy)."""
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32)[text.offset:text.offset + len(text) + 1] \
        if len(text) else np.zeros(1, dtype=np.int32)
    data = text.buffers()[2]
    data = np.frombuffer(data, dtype=np.uint8)[offsets[0]:offsets[-1]] if data is not None else np.zeros(0, dtype=np.uint8)
    return offsets - offsets[0], data


def _messy_rows(text: pa.Array) -> np.ndarray:
    """Rows holding two spaces in a row, a tab/newline/\\v/\\f/\\r, or a space at either end (null rows: False).

    A few numpy passes over the string array's data buffer instead of a regex per row; these bytes
    are ASCII, so in UTF-8 text they are never part of a longer character. Two spaces that straddle
    two rows mark the first one, which ends in a space and so needs the rewrite anyway.
    """
    offsets, data = _string_bytes(text)
    messy = np.zeros(len(text), dtype=bool)
    if len(data) == 0:
        return messy
    starts, ends = offsets[:-1], offsets[1:]
    control = np.subtract(data, 9, dtype=np.uint8) < 5  # \t \n \v \f \r are bytes 9..13
    space = data == ord(" ")
    hit = space[:-1] & space[1:]
    hit |= control[:-1]
    hits = np.flatnonzero(hit)
    if control[-1]:
        hits = np.append(hits, len(data) - 1)
    messy[np.searchsorted(ends, hits, side="right")] = True
    nonempty = ends > starts
    messy[nonempty] |= space[starts[nonempty]] | space[ends[nonempty] - 1]
    if text.null_count:
        messy &= np.asarray(text.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    return messy


@dataclass
class ExactDedup:
    """Drop rows whose normalised text was already seen (first one wins); exact string equality, see :func:`first_occurrences`."""

    name: str = "exact_dedup"
    version: str = "1"

    def params(self) -> dict[str, Any]:
        return {"normalize": "lower+collapse-whitespace+trim"}

    def apply(self, rows: FilterInput) -> FilterResult:
        return FilterResult(first_occurrences(rows.norm))


def first_occurrences(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """True for the first row holding each distinct string (nulls count as one value); exact, no hash can collide.

    Two steps. A 64-bit key per row from its byte length and three 8-byte words (start, middle, end)
    is computed with numpy; equal strings always get equal keys, so a row whose key no other row has
    is unique and kept without looking further (found by sorting the keys). Only rows sharing a key
    go to Arrow's dictionary encoding, which compares their full bytes. A key collision between
    different strings costs time, never a row.
    """
    if pa.types.is_large_string(values.type):
        values = values.cast(pa.string())
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    keys = list(ordered_map(_row_keys, chunks)) if len(chunks) > 1 else [_row_keys(chunk) for chunk in chunks]
    if any(chunk.null_count or k is None for chunk, k in zip(chunks, keys)):
        return _first_by_dictionary(_contiguous(values))
    shared = np.flatnonzero(_shared_keys(np.concatenate(keys) if keys else np.zeros(0, np.uint64)))
    keep = np.ones(len(values), dtype=bool)
    if len(shared):
        keep[shared] = _first_by_dictionary(_take_sorted(chunks, shared))
    return keep


def _shared_keys(keys: np.ndarray) -> np.ndarray:
    """True where another row has the same key."""
    order = np.argsort(keys)
    ordered = keys[order]
    same = ordered[1:] == ordered[:-1]
    shared_sorted = np.zeros(len(keys), dtype=bool)
    shared_sorted[1:] |= same
    shared_sorted[:-1] |= same
    shared = np.empty(len(keys), dtype=bool)
    shared[order] = shared_sorted
    return shared


def _take_sorted(chunks: list[pa.Array], rows: np.ndarray) -> pa.Array:
    """Rows (ascending indexes over all chunks) as one array, taken chunk by chunk (no copy of the whole column)."""
    bounds = np.cumsum([0] + [len(c) for c in chunks])
    cuts = np.searchsorted(rows, bounds)
    parts = [chunk.take(pa.array(rows[cuts[i]:cuts[i + 1]] - bounds[i])) for i, chunk in enumerate(chunks) if cuts[i + 1] > cuts[i]]
    return parts[0] if len(parts) == 1 else pa.concat_arrays(parts)


def _first_by_dictionary(values: pa.Array) -> np.ndarray:
    """First occurrences by full-string equality: dictionary codes come in order of first appearance."""
    if len(values) == 0:
        return np.zeros(0, dtype=bool)
    codes = pc.dictionary_encode(values, null_encoding="encode").indices.to_numpy(zero_copy_only=False).astype(np.int64)
    keep = np.empty(len(codes), dtype=bool)
    keep[0] = True
    keep[1:] = codes[1:] > np.maximum.accumulate(codes)[:-1]
    return keep


def _contiguous(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One Arrow array (chunks copied together only when there is more than one)."""
    if isinstance(array, pa.Array):
        return array
    return array.chunk(0) if array.num_chunks == 1 else array.combine_chunks()


_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0xD6E8FEB86659FD93))


def _row_keys(values: pa.Array, piece: int = 65_536) -> np.ndarray | None:
    """A uint64 per row that depends only on the row's bytes (None when the rows hold under 8 bytes in all).

    Worked out ``piece`` rows at a time so numpy's scratch arrays stay small and are reused.
    """
    offsets, data = _string_bytes(values)
    if len(values) == 0:
        return np.zeros(0, dtype=np.uint64)
    if len(data) < 8:
        return None
    words = np.ndarray((len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))  # words[i]: the 8 bytes from i
    keys = np.empty(len(values), dtype=np.uint64)
    for first in range(0, len(values), piece):
        bounds = offsets[first:first + piece + 1].astype(np.int64)
        keys[first:first + piece] = _piece_keys(words, bounds[:-1], np.diff(bounds), len(data) - 8)
    return keys


def _piece_keys(words: np.ndarray, starts: np.ndarray, lengths: np.ndarray, last_start: int) -> np.ndarray:
    width = np.minimum(lengths, 8).astype(np.uint64)
    mask = np.where(width >= 8, np.uint64(0xFFFFFFFFFFFFFFFF), (np.uint64(1) << (np.uint64(8) * width)) - np.uint64(1))
    key = lengths.astype(np.uint64) * _MIX[0]
    for index, position in enumerate((starts, starts + np.maximum(lengths // 2 - 4, 0), starts + np.maximum(lengths - 8, 0))):
        clamped = np.minimum(position, last_start)  # near the end of the data: read the last word and shift
        key ^= (words[clamped] >> (np.uint64(8) * (position - clamped).astype(np.uint64))) & mask
        key *= _MIX[index + 1]
        key ^= key >> np.uint64(31)
    return key


@dataclass
class QualityFilter:
    """Length bounds on the text, a cap on word repetition, and a floor on ``quality_score`` where rows have one."""

    min_chars: int = 1
    max_chars: int = 20_000
    max_repetition: float = 0.5
    min_words_for_repetition: int = 8
    min_quality: float | None = 0.5
    name: str = "quality"
    version: str = "1"

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("name", "version")}

    def apply(self, rows: FilterInput) -> FilterResult:
        length = pc.utf8_length(rows.raw).to_numpy(zero_copy_only=False)
        keep = (length >= self.min_chars) & (length <= self.max_chars)
        keep &= repetition_ratio(rows.norm, self.min_words_for_repetition) <= self.max_repetition
        if self.min_quality is not None and "quality_score" in rows.table.column_names:
            keep &= ~as_mask(pc.less(rows.table.column("quality_score"), self.min_quality))
        return FilterResult(keep)


def repetition_ratio(norm: pa.Array | pa.ChunkedArray, min_words: int) -> np.ndarray:
    """1 − distinct words / words per row (0 for rows shorter than ``min_words``), computed with Arrow group-by."""
    norm = _contiguous(norm)
    words = pc.utf8_split_whitespace(norm)
    counts = pc.list_value_length(words).to_numpy(zero_copy_only=False)
    ratio = np.zeros(len(norm))
    long_rows = np.flatnonzero(counts >= min_words)
    if len(long_rows) == 0:
        return ratio
    subset = words.take(pa.array(long_rows))
    flat = pa.table({"row": pc.list_parent_indices(subset), "word": pc.list_flatten(subset)})
    distinct = flat.group_by("row", use_threads=False).aggregate([("word", "count_distinct")]).sort_by("row")
    ratio[long_rows[distinct.column("row").to_numpy()]] = 1 - distinct.column("word_count_distinct").to_numpy() / counts[long_rows]
    return ratio


DEFAULT_HAZARDS: dict[str, str] = {
    "nerve_agent": r"\b(sarin|soman|tabun|vx|novichok)\b",
    "bioweapon": r"\b(weaponi[sz]e|aerosoli[sz]e)\w*\b.*\b(anthrax|smallpox|plague|toxin|pathogen)",
    "toxin_synthesis": r"\b(synthesi[sz]e|produce|extract)\w*\b.*\b(ricin|botulinum|abrin)\b",
    "explosive": r"\b(build|make|assemble)\w*\b.*\b(bomb|ied|explosive device|detonator)\b",
    "nuclear": r"\benrich\w*\b.*\buranium\b.*\b(weapon|bomb)",
    "self_harm": r"\b(how to|ways to)\b.*\b(kill myself|commit suicide)\b",
}


@dataclass
class SafetyFilter:
    """Count hazard-pattern hits per row (``red_flag_count``); rows at or above the limit leave the version for review."""

    max_red_flags: int = 1
    patterns: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_HAZARDS))
    name: str = "safety"
    version: str = "1"

    def params(self) -> dict[str, Any]:
        return {"max_red_flags": self.max_red_flags, "patterns": self.patterns}

    def apply(self, rows: FilterInput) -> FilterResult:
        hits = {name: as_mask(pc.match_substring_regex(rows.norm, pattern)) for name, pattern in self.patterns.items()}
        count = np.sum(list(hits.values()), axis=0) if hits else np.zeros(len(rows.norm), dtype=int)
        flagged_rows = np.flatnonzero(count >= self.max_red_flags)
        flagged = [{"red_flag_count": int(count[i]), "patterns": [n for n, m in hits.items() if m[i]]} for i in flagged_rows]
        return FilterResult(count < self.max_red_flags, _attach(rows, flagged_rows, flagged, self.name))


@dataclass
class UnphysicalFilter:
    """Domain rules (plug-ins from :mod:`nexa.data.rules`): rows stating impossible quantities are set aside."""

    rules: list[str] = field(default_factory=lambda: sorted(RULES))
    name: str = "unphysical"
    version: str = "1"

    def params(self) -> dict[str, Any]:
        return {"rules": {name: RULES[name].description for name in self.rules}}

    def apply(self, rows: FilterInput) -> FilterResult:
        keep = np.ones(len(rows.raw), dtype=bool)
        reasons: dict[int, list[str]] = {}
        for name in self.rules:
            rule: UnphysicalRule = RULES[name]
            hit = np.asarray(rule.check(_contiguous(rows.raw), rows.table), dtype=bool)
            for i in np.flatnonzero(hit):
                reasons.setdefault(int(i), []).append(name)
            keep &= ~hit
        flagged_rows = np.array(sorted(reasons), dtype=np.int64)
        return FilterResult(keep, _attach(rows, flagged_rows, [{"rules": reasons[int(i)]} for i in flagged_rows], self.name))


def _attach(rows: FilterInput, indexes: np.ndarray, details: list[dict], filter_name: str) -> list[dict[str, Any]]:
    """Flagged rows with where they came from and the row itself, for ``nexa data show`` and review."""
    if len(indexes) == 0:
        return []
    picked = rows.table.take(pa.array(indexes)).to_pylist()
    return [{"filter": filter_name, "file": r.pop("__file"), "row": r.pop("__row"), "line": r.pop("__line"), **d, "data": r}
            for r, d in zip(picked, details)]

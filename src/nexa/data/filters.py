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


@dataclass
class FilterInput:
    """What every filter reads: the rows, their joined text fields (raw and normalised) and the schema's name."""

    table: pa.Table
    raw: pa.Array
    norm: pa.Array
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

    The whitespace rewrite (a regex) runs only on the rows that need it, found with one cheap match.
    """
    text = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
    ascii = pc.all(pc.string_is_ascii(text)).as_py() is not False
    lower = pc.ascii_lower(text) if ascii else pc.utf8_lower(text)
    messy = pc.fill_null(pc.match_substring_regex(lower, r"\s\s|[\t\n\r\f\v]|^\s|\s$"), False)
    if not pc.any(messy).as_py():
        return lower
    trimmed = pc.ascii_trim_whitespace(lower.filter(messy)) if ascii else pc.utf8_trim_whitespace(lower.filter(messy))
    words = pc.ascii_split_whitespace(trimmed) if ascii else pc.utf8_split_whitespace(trimmed)
    return pc.replace_with_mask(lower, messy, pc.binary_join(words, " "))


def _mask(array) -> np.ndarray:
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


@dataclass
class ExactDedup:
    """Drop rows whose normalised text was already seen (first one wins), using Arrow's hash grouping."""

    name: str = "exact_dedup"
    version: str = "1"

    def params(self) -> dict[str, Any]:
        return {"normalize": "lower+collapse-whitespace+trim"}

    def apply(self, rows: FilterInput) -> FilterResult:
        n = len(rows.norm)
        keys = pa.table({"k": rows.norm, "i": pa.array(np.arange(n, dtype=np.int64))})
        first = keys.group_by("k", use_threads=False).aggregate([("i", "min")]).column("i_min").to_numpy()
        keep = np.zeros(n, dtype=bool)
        keep[first] = True
        return FilterResult(keep)


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
            keep &= ~_mask(pc.less(rows.table.column("quality_score"), self.min_quality))
        return FilterResult(keep)


def repetition_ratio(norm: pa.Array, min_words: int) -> np.ndarray:
    """1 − distinct words / words per row (0 for rows shorter than ``min_words``), computed with Arrow group-by."""
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
        hits = {name: _mask(pc.match_substring_regex(rows.norm, pattern)) for name, pattern in self.patterns.items()}
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
            hit = np.asarray(rule.check(rows.raw, rows.table), dtype=bool)
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

"""Streaming loaders: JSONL, CSV, Parquet and saved HF ``datasets`` folders, read in Arrow batches.

Each loader yields :class:`Batch` objects holding at most a few MB of rows, so a file larger than
memory streams through. A batch carries, per row, its position in the file (``row``, 1-based among
the rows read) and, for JSONL, its physical ``line``, so every quarantined row can be found again.
Rows that cannot even be parsed (broken JSON, a CSV line with the wrong number of cells) are
returned as ``rejected`` with their reason instead of stopping the load.

JSONL goes through pyarrow's C++ reader with the schema's Arrow types. Lines whose text shows a
field holding the wrong kind of JSON value (which would make the reader drop the whole block) are
routed, with any block the reader still refuses, to a per-line ``json.loads`` path.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.ipc as ipc
import pyarrow.json as pj
import pyarrow.parquet as pq

from nexa.data.runtime import ordered_map, use_engine_pool
from nexa.data.schema import FieldSpec, RowSchema
from nexa.data.validate import as_mask, validate_objects

BLOCK_BYTES = 4 << 20
PARQUET_BATCH_ROWS = 131_072
_SLOW_SEGMENT = 64


@dataclass
class Rejected:
    """A row the loader could not turn into columns: where it was and why."""

    row: int
    line: int | None
    field: str | None
    reason: str
    raw: Any


@dataclass
class Batch:
    """Rows of one input file as an Arrow table, with their positions and the rows rejected beside them."""

    file: str
    table: pa.Table
    rows: np.ndarray
    lines: np.ndarray | None
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def read(self) -> int:
        return self.table.num_rows + len(self.rejected)


def detect_format(path: Path) -> str:
    """``jsonl``, ``csv``, ``parquet`` or ``hf`` from the path; anything else is a clear error."""
    if path.is_dir():
        if (path / "state.json").exists() or (path / "dataset_dict.json").exists():
            return "hf"
        raise ValueError(f"{path} is a folder but not a saved HF dataset (no state.json or dataset_dict.json)")
    suffix = "".join(path.suffixes[-1:]).lower()
    formats = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
    if suffix not in formats:
        raise ValueError(f"{path}: unknown input format {suffix!r}; use .jsonl, .csv, .parquet or a saved HF dataset folder")
    return formats[suffix]


def iter_batches(path: Path, schema: RowSchema) -> Iterator[Batch]:
    """Every batch of rows of one input, whatever its format."""
    yield from map_batches(path, schema)


def map_batches(path: Path, schema: RowSchema, function: Callable[[Batch], Any] | None = None) -> Iterator[Any]:
    """``function(batch)`` for every batch of one input, in file order (the batches themselves without one).

    JSONL blocks are parsed, and ``function`` run on them, on worker threads
    (:func:`nexa.data.runtime.ordered_map`); other formats run on the calling thread.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    use_engine_pool()
    function = function or (lambda batch: batch)
    kind = detect_format(path)
    if kind == "jsonl":
        yield from _jsonl(path, schema, function)
        return
    loader = {"csv": _csv, "parquet": _parquet, "hf": _hf}[kind]
    yield from map(function, loader(path, schema))


# -- Parquet and Arrow ---------------------------------------------------------------------------
def _parquet(path: Path, schema: RowSchema) -> Iterator[Batch]:
    start = 1
    for record_batch in pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH_ROWS):
        table = pa.Table.from_batches([record_batch])
        yield Batch(str(path), table, np.arange(start, start + table.num_rows), None)
        start += table.num_rows


def _hf(path: Path, schema: RowSchema) -> Iterator[Batch]:
    """A ``Dataset.save_to_disk`` folder (Arrow IPC stream files listed in state.json), or a DatasetDict of them."""
    if (path / "dataset_dict.json").exists():
        for split in json.loads((path / "dataset_dict.json").read_text())["splits"]:
            yield from _hf(path / split, schema)
        return
    state = json.loads((path / "state.json").read_text())
    for entry in state["_data_files"]:
        file = path / entry["filename"]
        start = 1
        with pa.memory_map(str(file)) as source:
            for record_batch in ipc.open_stream(source):
                table = pa.Table.from_batches([record_batch])
                yield Batch(str(file), table, np.arange(start, start + table.num_rows), None)
                start += table.num_rows


# -- CSV -----------------------------------------------------------------------------------------
def _csv(path: Path, schema: RowSchema) -> Iterator[Batch]:
    """Quoted cells, newlines inside quotes and a UTF-8 BOM are handled by pyarrow; every cell is read as text."""
    bad_shape: list[Rejected] = []

    def on_invalid(row) -> str:
        bad_shape.append(Rejected(0, row.number, None, f"expected {row.expected_columns} cells, found {row.actual_columns}", row.text))
        return "skip"

    header = _csv_header(path)
    reader = pcsv.open_csv(
        path,
        read_options=pcsv.ReadOptions(use_threads=False, block_size=BLOCK_BYTES),
        parse_options=pcsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
        convert_options=pcsv.ConvertOptions(column_types={name: pa.string() for name in header}, strings_can_be_null=False),
    )
    start = 1
    for record_batch in reader:
        table = pa.Table.from_batches([record_batch])
        rows = np.arange(start, start + table.num_rows)
        start += table.num_rows
        rejected, bad_shape[:] = _number_rejected(bad_shape, start), []
        start += len(rejected)
        yield Batch(str(path), table, rows, None, rejected)
    if bad_shape:
        yield Batch(str(path), pa.table({}), np.arange(0), None, _number_rejected(bad_shape, start))


def _number_rejected(rejected: list[Rejected], start: int) -> list[Rejected]:
    for offset, item in enumerate(rejected):
        item.row = start + offset
    return list(rejected)


def _csv_header(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        import csv

        return next(csv.reader(handle), [])


# -- JSONL ---------------------------------------------------------------------------------------
@dataclass
class _Block:
    """One block of a JSONL file with its lines found and numbered (cheap, done in file order)."""

    data: bytearray
    starts: np.ndarray
    ends: np.ndarray
    blank: np.ndarray
    line_base: int
    row_base: int


def _jsonl(path: Path, schema: RowSchema, function: Callable[[Batch], Any]) -> Iterator[Any]:
    """Blocks are split into numbered lines in file order, then parsed and handed to ``function`` on worker threads."""
    suspicious = _suspicious_pattern(schema)
    yield from ordered_map(lambda block: function(_jsonl_block(str(path), block, schema, suspicious)), _numbered_blocks(path))


def _numbered_blocks(path: Path) -> Iterator[_Block]:
    line_base, row_base = 1, 1
    for data in _blocks(path):
        starts, ends = _split_lines(data)
        blank = _blank_lines(data, starts, ends)
        yield _Block(data, starts, ends, blank, line_base, row_base)
        line_base += len(starts)
        row_base += int(len(blank) - blank.sum())


_ASCII_SPACE = np.zeros(256, dtype=bool)
_ASCII_SPACE[list(b" \t\n\r\x0b\x0c")] = True


def _blank_lines(block: bytes | bytearray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Lines that are empty or only ASCII whitespace (JSON's whitespace); only lines starting with whitespace are looked at closely."""
    data = np.frombuffer(block, dtype=np.uint8)
    blank = ends <= starts
    if len(data) == 0:
        return blank
    maybe = np.flatnonzero(~blank & _ASCII_SPACE[data[np.minimum(starts, len(data) - 1)]])
    for i in maybe.tolist():
        blank[i] = not block[starts[i]:ends[i]].strip()
    return blank


def _blocks(path: Path) -> Iterator[bytearray]:
    """The file in ~4 MB pieces that end on a newline, so no line is ever split.

    Bytes are read straight into the block; only the partial line at its end is copied, to start the next.
    """
    with open(path, "rb", buffering=0) as handle:
        rest = handle.read(3)
        if rest == b"\xef\xbb\xbf":  # a UTF-8 byte-order mark is not data
            rest = b""
        while True:
            block = bytearray(len(rest) + BLOCK_BYTES)
            block[:len(rest)] = rest
            with memoryview(block) as view, view[len(rest):] as free:
                got = handle.readinto(free)
            del block[len(rest) + got:]
            if got == 0:
                if block:
                    yield block + b"\n"
                return
            cut = block.rfind(b"\n") + 1
            rest = bytes(block[cut:])
            if cut:
                del block[cut:]
                yield block


def _split_lines(block: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Start and end offsets of each line of ``block`` (end excludes ``\\n`` and a ``\\r`` before it)."""
    data = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(data == ord("\n"))
    starts = np.concatenate(([0], ends[:-1] + 1))
    if block.find(b"\r") < 0:
        return starts, ends
    crlf = (ends > starts) & (data[np.maximum(ends - 1, 0)] == ord("\r"))
    return starts, ends - crlf


def _suspicious_pattern(schema: RowSchema) -> str:
    """A regex matching lines where a schema key is followed by a JSON value of another kind.

    Keys are grouped by the kind of value they allow (one alternation per kind), which RE2 matches
    in about half the time of one branch per key.
    """
    allowed = {"string": '"', "number": r"\-0-9", "integer": r"\-0-9", "boolean": "tf", "object": "{"}
    keys: dict[str, set[str]] = {}
    for spec in _all_fields(schema.fields):
        keys.setdefault(allowed[spec.base_type], set()).add(re.escape(spec.path.rsplit(".", 1)[-1]))
    return "|".join(f'"(?:{"|".join(sorted(names))})"\\s*:\\s*[^{kind}n\\s]' for kind, names in sorted(keys.items()))


def _all_fields(specs: tuple[FieldSpec, ...]) -> Iterator[FieldSpec]:
    for spec in specs:
        yield spec
        yield from _all_fields(spec.children)


def _jsonl_block(file: str, block: _Block, schema: RowSchema, suspicious: str) -> Batch:
    starts, ends, blank = block.starts, block.ends, block.blank
    odd = ~blank
    texts = _line_array(block.data, starts, ends)
    if texts is not None:  # else the block is not valid UTF-8 and every line takes the per-line path
        odd &= _not_braced(block.data, starts, ends) | as_mask(pc.match_substring_regex(texts, suspicious))
    parser = _BlockParser(block.data, starts, ends, schema, block.row_base + np.cumsum(~blank) - 1,
                          block.line_base + np.arange(len(starts)))
    parser.slow(np.flatnonzero(odd))
    parser.fast(np.flatnonzero(~blank & ~odd), in_place=True)
    return parser.batch(file)


def _not_braced(block: bytes, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Lines whose first byte is not ``{`` or whose last byte is not ``}`` (so padded lines too: they take the per-line path)."""
    data = np.frombuffer(block, dtype=np.uint8)
    empty = ends <= starts
    first = data[np.minimum(starts, len(data) - 1)]
    last = data[np.maximum(ends - 1, 0)]
    return empty | (first != ord("{")) | (last != ord("}"))


def _line_array(block: bytes, starts: np.ndarray, ends: np.ndarray) -> pa.Array | None:
    """Lines as an Arrow string array over the block's own bytes (no copy); None when it is not valid UTF-8.

    Value i spans from the start of line i to the start of line i+1, so it keeps its newline (the
    wrong-type pattern does not care).
    """
    if len(block) >= 2**31 or len(starts) == 0:
        return None
    offsets = np.append(starts, len(block)).astype(np.int32)
    texts = pa.StringArray.from_buffers(len(starts), pa.py_buffer(offsets.tobytes()), pa.py_buffer(block))
    try:
        texts.validate(full=True)
    except pa.ArrowInvalid:
        return None
    return texts


def _select_bytes(block: bytes | bytearray, starts: np.ndarray, ends: np.ndarray, picked: np.ndarray) -> bytes | bytearray:
    """A copy of the block with every line not picked blanked out (see :func:`_blank_unpicked`).

    When most lines are left out, the picked lines are gathered instead.
    """
    if len(picked) < len(starts) // 2:
        keep = np.zeros(len(starts), dtype=bool)
        keep[picked] = True
        data = np.frombuffer(block, dtype=np.uint8).copy()
        data[ends] = ord("\n")
        return data[np.repeat(keep, np.diff(np.append(starts, len(data))))].tobytes()
    data = bytearray(block)
    _blank_unpicked(data, starts, ends, picked)
    return data


def _blank_unpicked(block: bytearray, starts: np.ndarray, ends: np.ndarray, picked: np.ndarray) -> None:
    """Overwrite every line not picked with spaces (pyarrow skips blank lines), in place; newlines stay.

    A ``\\r`` before a newline becomes a newline too: the ``\\r`` ends the line, the line after it is blank.
    """
    data = np.frombuffer(block, dtype=np.uint8)
    dropped = np.ones(len(starts), dtype=bool)
    dropped[picked] = False
    first, lengths = starts[dropped], ends[dropped] - starts[dropped]
    total = int(lengths.sum())
    if total:
        skip = np.concatenate(([0], np.cumsum(lengths)[:-1]))  # bytes of dropped lines before each one
        data[np.repeat(first - skip, lengths) + np.arange(total)] = ord(" ")
    crlf = np.flatnonzero(ends < np.append(starts[1:], len(data)) - 1)
    data[ends[crlf]] = ord("\n")


def _keep_columns(table: pa.Table, schema: RowSchema) -> pa.Table:
    """Schema columns typed, plus one marker column per unexpected field (true where the row has it)."""
    columns, markers = [], {}
    for spec in schema.fields:
        column = table.column(spec.path).combine_chunks()
        if spec.base_type == "object" and pa.types.is_struct(column.type):
            column = _strip_struct(column, spec, markers)
        columns.append(column)
    result = pa.Table.from_arrays(columns, schema=schema.arrow_schema())
    for name in table.column_names:
        if name not in result.column_names:
            markers[name] = table.column(name)
    for name, values in markers.items():
        result = result.append_column(name, pc.if_else(pc.is_valid(values), pa.scalar(True, pa.bool_()), pa.scalar(None, pa.bool_())))
    return result


def _strip_struct(column: pa.Array, spec: FieldSpec, markers: dict) -> pa.Array:
    """The struct with only the schema's children; children the reader inferred become markers."""
    names = [column.type.field(i).name for i in range(column.type.num_fields)]
    wanted = [c.path for c in spec.children]
    for extra in (n for n in names if n not in wanted):
        markers[f"{spec.path}.{extra}"] = pc.struct_field(column, [names.index(extra)])
    children = [pc.struct_field(column, [names.index(n)]) for n in wanted]
    return pa.StructArray.from_arrays(children, fields=list(spec.arrow_type()), mask=pc.is_null(column))


_DECODER = json.JSONDecoder()


def _loads(raw: bytes | bytearray) -> Any:
    """``json.loads(raw)``, minus its encoding sniffing for lines that start like an object (which it reads as UTF-8)."""
    if raw[:1] == b"{" and raw[1:2] != b"\x00":
        return _DECODER.decode(raw.decode("utf-8", "surrogatepass"))
    return json.loads(raw)


@dataclass
class _BlockParser:
    """Turns the lines of one block into typed tables (pyarrow where it can, per line where it must)."""

    block: bytes | bytearray
    starts: np.ndarray
    ends: np.ndarray
    schema: RowSchema
    row_numbers: np.ndarray
    line_numbers: np.ndarray
    tables: list[pa.Table] = field(default_factory=list)
    positions: list[np.ndarray] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    def batch(self, file: str) -> Batch:
        table = pa.concat_tables(self.tables, promote_options="permissive") if self.tables else self.schema.arrow_schema().empty_table()
        picked = np.concatenate(self.positions) if self.positions else np.arange(0)
        if len(picked) > 1 and np.any(picked[1:] < picked[:-1]):  # rows from the per-line path go back in line order
            order = np.argsort(picked, kind="stable")
            table, picked = table.take(pa.array(order)), picked[order]
        return Batch(file, table, self.row_numbers[picked], self.line_numbers[picked], self.rejected)

    def raw(self, i: int) -> bytes | bytearray:
        return self.block[self.starts[i]:self.ends[i]]

    def reject(self, i: int, where: str | None, reason: str) -> None:
        self.rejected.append(Rejected(int(self.row_numbers[i]), int(self.line_numbers[i]), where, reason,
                                      self.raw(i).decode("utf-8", "replace")))

    def keep(self, table: pa.Table, picked: np.ndarray) -> None:
        self.tables.append(table)
        self.positions.append(np.asarray(picked, dtype=np.int64))

    def fast(self, picked: np.ndarray, in_place: bool = False) -> None:
        """Parse the picked lines with pyarrow; a refused block is split in halves until the bad lines are found.

        ``in_place`` blanks the other lines in the block itself instead of a copy: only for the first
        call, once the per-line path has read every line it needs.
        """
        if len(picked) <= _SLOW_SEGMENT:
            self.slow(picked)
            return
        if in_place and isinstance(self.block, bytearray):
            _blank_unpicked(self.block, self.starts, self.ends, picked)
            data = self.block
        else:
            data = _select_bytes(self.block, self.starts, self.ends, picked)
        try:
            table = pj.read_json(
                pa.BufferReader(pa.py_buffer(data)),
                read_options=pj.ReadOptions(block_size=len(data) + 1, use_threads=False),
                parse_options=pj.ParseOptions(explicit_schema=self.schema.arrow_schema(), unexpected_field_behavior="infer"),
            )
        except pa.ArrowInvalid:
            table = None
        if table is None or table.num_rows != len(picked):
            half = len(picked) // 2
            self.fast(picked[:half])
            self.fast(picked[half:])
            return
        self.keep(_keep_columns(table, self.schema), picked)

    def slow(self, picked: np.ndarray) -> None:
        """``json.loads`` each line; rows that do not fit the schema are rejected with the first reason."""
        objects, kept = [], []
        for i, start, end in zip(picked.tolist(), self.starts[picked].tolist(), self.ends[picked].tolist()):
            try:
                objects.append(_loads(self.block[start:end]))
                kept.append(i)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
                self.reject(i, None, f"not valid JSON: {exc}")
        good, bad = validate_objects(self.schema, objects)
        for index, where, reason in bad:
            self.reject(kept[index], where, reason)
        self._store([objects[g] for g in good], [kept[g] for g in good])

    def _store(self, objects: list[Any], picked: list[int]) -> None:
        """Valid objects as a typed table; a value Arrow cannot hold (an integer past 64 bits) rejects its row."""
        if not objects:
            return
        try:
            self.keep(pa.Table.from_pylist(objects, schema=self.schema.arrow_schema()), np.asarray(picked))
            return
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, UnicodeError):
            pass
        for obj, i in zip(objects, picked):
            try:
                self.keep(pa.Table.from_pylist([obj], schema=self.schema.arrow_schema()), np.asarray([i]))
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, UnicodeError) as exc:
                self.reject(i, None, f"value cannot be stored: {exc}")

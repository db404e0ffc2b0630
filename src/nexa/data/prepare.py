"""``prepare``: inputs → validated, filtered, split rows → a new immutable dataset version, nothing lost.

Every row read ends in exactly one place: the version, the quarantine file (failed validation, with
file, line/row, field and reason), or a filter's removed count (safety and unphysical rows also in a
reviewable ``flagged`` file). :class:`FileCounts` keeps that ledger per input file and
:meth:`FileCounts.balanced` is the invariant the tests hold it to.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from nexa.data.filters import ExactDedup, FilterInput, QualityFilter, RowFilter, SafetyFilter, UnphysicalFilter, normalize
from nexa.data.loaders import Batch, map_batches
from nexa.data.runtime import gc_paused, ordered_map
from nexa.data.schema import RowSchema
from nexa.data.splits import DEFAULT_FRACTIONS, assign_splits, unit_interval
from nexa.data.validate import Problems, check, conform
from nexa.ledger import ArtifactRef, DatasetManifest, FilterRecord, Lab
from nexa.ledger.datasets import parquet_bytes, table_content_hash, write_dataset_version
from nexa.ledger.hashing import sha256_bytes
from nexa.ledger.registry import REF_PATTERN, DatasetRegistry

FILTER_NAMES = ("exact", "near", "semantic", "quality", "safety", "unphysical")
DEFAULT_FILTERS = ("exact", "near", "quality", "safety", "unphysical")
POSITION_COLUMNS = ("__file", "__row", "__line")


@dataclass
class FileCounts:
    """One input file's ledger: rows read and where each went."""

    read: int = 0
    written: int = 0
    quarantined: int = 0
    removed: dict[str, int] = field(default_factory=dict)

    def balanced(self) -> bool:
        return self.read == self.written + self.quarantined + sum(self.removed.values())


@dataclass
class Validated:
    """The rows that passed validation (with their positions), the quarantine, and per-file counts."""

    table: pa.Table
    quarantine: list[dict[str, Any]]
    files: list[str]
    counts: dict[str, FileCounts]
    raw: pa.ChunkedArray | None = None  # the table's text columns, built beside validation (see text())
    norm: pa.ChunkedArray | None = None

    def drop_rows(self) -> None:
        """Let go of the rows and their text once the filters have copied what they keep: the ledger and the
        quarantine stay. At a million rows that is ≈ 250 MB the split and the write no longer hold."""
        self.table = self.table.schema.empty_table()  # a zero-length slice would keep every buffer alive
        self.raw = self.norm = None

    def text(self, schema: RowSchema) -> tuple[pa.Array | pa.ChunkedArray, pa.Array | pa.ChunkedArray]:
        """:func:`text_columns` of ``table``: the pieces built on the worker threads (chunked, one per batch), else computed now."""
        if self.raw is None or self.norm is None or len(self.raw) != self.table.num_rows:
            return text_columns(self.table, schema)
        return self.raw, self.norm


@dataclass
class Filtered:
    """The rows the filters kept, their normalised text (what splitting hashes), and what each filter did."""

    table: pa.Table
    records: list[FilterRecord]
    flagged: list[dict[str, Any]]
    norm: pa.Array | pa.ChunkedArray | None = None


# -- validation ----------------------------------------------------------------------------------
def validate_batch(batch: Batch, schema: RowSchema, file_index: int) -> tuple[pa.Table, list[dict[str, Any]]]:
    """Good rows of one batch (schema columns + positions) and a quarantine record for each bad one."""
    problems = Problems(batch.table.num_rows)
    conformed = conform(batch.table, schema, problems)
    check(conformed, schema, problems)
    if not schema.exact:
        _check_each(conformed, schema, problems)
    bad = np.flatnonzero(problems.bad)
    records = [_record(batch.file, r.row, r.line, r.field, r.reason, r.raw) for r in batch.rejected]
    originals = batch.table.take(pa.array(bad)).to_pylist() if len(bad) else []
    lines_of_bad = batch.lines[bad].tolist() if batch.lines is not None else [None] * len(bad)
    for i, row, line, original in zip(bad.tolist(), batch.rows[bad].tolist(), lines_of_bad, originals):
        records.append(_record(batch.file, row, line, problems.where[i], problems.reason[i], original))
    good = np.flatnonzero(~problems.bad)
    table = conformed if len(bad) == 0 else conformed.filter(pa.array(~problems.bad))
    lines = batch.lines[good] if batch.lines is not None else np.full(len(good), -1)
    positions = {"__file": np.full(len(good), file_index, dtype=np.int32), "__row": batch.rows[good].astype(np.int64),
                 "__line": lines.astype(np.int64)}
    for name, values in positions.items():
        table = table.append_column(name, pa.array(values))
    return table, records


def _check_each(table: pa.Table, schema: RowSchema, problems: Problems) -> None:
    """Schemas with keywords the column checks do not cover: every remaining row also goes through jsonschema."""
    for i, row in enumerate(table.to_pylist()):
        if problems.bad[i]:
            continue
        error = schema.first_error({k: v for k, v in row.items() if v is not None})
        if error is not None:
            problems.add(np.eye(1, len(problems.bad), i, dtype=bool)[0], *error)


def _record(file: str, row: int, line: int | None, where: str | None, reason: str, raw: Any) -> dict[str, Any]:
    return {"file": file, "row": row, "line": line, "field": where, "reason": reason, "raw": raw}


def validate_inputs(inputs: list[tuple[str, Path]], schema: RowSchema, on_rows: Callable[[int], None] | None = None) -> Validated:
    """Stream every input through the loaders and the validator; good rows come back in input order.

    Each batch is validated on the loader's worker thread, beside the parsing of the next ones.
    """
    with gc_paused():
        return _validate_inputs(inputs, schema, on_rows)


def _validate_inputs(inputs: list[tuple[str, Path]], schema: RowSchema, on_rows: Callable[[int], None] | None) -> Validated:
    tables, texts, quarantine, counts = [], [], [], {}
    for index, (label, path) in enumerate(inputs):
        counts[label] = FileCounts()
        for read, table, records, text in map_batches(path, schema, lambda batch, index=index: _check_batch(batch, schema, index)):
            counts[label].read += read
            counts[label].quarantined += len(records)
            if label != str(path):
                for record in records:
                    record["file"] = label if record["file"] == str(path) else record["file"]
            quarantine.extend(records)
            tables.append(table)
            texts.append(text)
            if on_rows:
                on_rows(read)
    table = pa.concat_tables(tables, promote_options="permissive") if tables else _empty(schema)
    validated = Validated(table, quarantine, [label for label, _ in inputs], counts)
    if not _in_order(table):  # a safety net: every loader yields its rows in order
        validated.table = table.sort_by([("__file", "ascending"), ("__row", "ascending")])
    elif texts:
        validated.raw = pa.chunked_array([raw for raw, _ in texts], pa.string())
        validated.norm = pa.chunked_array([norm for _, norm in texts], pa.string())
    return validated


def _check_batch(batch: Batch, schema: RowSchema, file_index: int) -> tuple[int, pa.Table, list[dict[str, Any]], tuple[pa.Array, pa.Array]]:
    """What a worker thread does with one batch: validate it and build the good rows' text columns."""
    table, records = validate_batch(batch, schema, file_index)
    return batch.read, table, records, _text_piece(table, schema)


def _contiguous(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(array, pa.Array):
        return array
    return array.chunk(0) if array.num_chunks == 1 else array.combine_chunks()


def _in_order(table: pa.Table) -> bool:
    position = table.column("__file").to_numpy().astype(np.int64) * (1 << 40) + table.column("__row").to_numpy()
    return bool(np.all(position[1:] > position[:-1]))


def _empty(schema: RowSchema) -> pa.Table:
    table = schema.arrow_schema().empty_table()
    for name, kind in (("__file", pa.int32()), ("__row", pa.int64()), ("__line", pa.int64())):
        table = table.append_column(name, pa.array([], kind))
    return table


# -- filters -------------------------------------------------------------------------------------
TEXT_PIECE_ROWS = 65_536


def text_columns(table: pa.Table, schema: RowSchema) -> tuple[pa.Array, pa.Array]:
    """The schema's text fields joined by spaces (nulls as empty), raw and normalised.

    Built in pieces of :data:`TEXT_PIECE_ROWS` rows on worker threads (the kernels let go of the
    GIL, and each piece's scratch arrays stay small), then put back together in row order.
    """
    pieces = list(ordered_map(lambda piece: _text_piece(piece, schema), table.to_batches(max_chunksize=TEXT_PIECE_ROWS)))
    if not pieces:
        return pa.array([], pa.string()), pa.array([], pa.string())
    if len(pieces) == 1:
        return pieces[0]
    return pa.concat_arrays([raw for raw, _ in pieces]), pa.concat_arrays([norm for _, norm in pieces])


def _text_piece(batch: pa.RecordBatch | pa.Table, schema: RowSchema) -> tuple[pa.Array, pa.Array]:
    parts = [pc.fill_null(_contiguous(batch.column(f)), "") for f in schema.text_fields]
    raw = pc.binary_join_element_wise(*parts, pa.scalar(" ", pa.string())) if len(parts) > 1 else parts[0]
    if pa.types.is_large_string(raw.type):
        raw = raw.cast(pa.string())
    return raw, normalize(raw)


def apply_filters(validated: Validated, schema: RowSchema, filters: Iterable[RowFilter],
                  on_filter: Callable[[str], None] | None = None) -> Filtered:
    """Run each filter on what the previous ones kept; count removals per filter and per input file."""
    table, records, flagged = validated.table, [], []
    raw, norm = validated.text(schema)
    filters = list(filters)
    for position, row_filter in enumerate(filters):
        if on_filter:
            on_filter(row_filter.name)
        result = row_filter.apply(FilterInput(table, raw, norm, schema.name))
        removed = ~result.keep
        per_file = np.bincount(table.column("__file").to_numpy()[removed], minlength=len(validated.files))
        for label, n in zip(validated.files, per_file):
            validated.counts[label].removed[row_filter.name] = int(n)
        for item in result.flagged:
            item["file"] = validated.files[item["file"]]
        flagged.extend(result.flagged)
        records.append(FilterRecord(name=row_filter.name, version=row_filter.version, params=row_filter.params(), removed=int(removed.sum())))
        keep = pa.array(result.keep)
        # side by side on the workers (Arrow lets go of the GIL); after the last filter nothing reads the raw text
        kept = [table, norm] + ([raw] if position + 1 < len(filters) else [])
        table, norm, *rest = ordered_map(lambda columns: columns.filter(keep), kept)
        raw = rest[0] if rest else None
    return Filtered(table, records, flagged, norm)


def build_filters(names: Iterable[str], **params: Any) -> list[RowFilter]:
    """Filter objects by short name (``exact``, ``near``, ``semantic``, ``quality``, ``safety``, ``unphysical``)."""
    from nexa.data.dedup import NearDedup, SemanticDedup

    makers: dict[str, Callable[[], RowFilter]] = {
        "exact": ExactDedup,
        "near": lambda: NearDedup(threshold=params.get("near_threshold", 0.8), num_perm=params.get("num_perm", 128)),
        "semantic": lambda: SemanticDedup(threshold=params.get("semantic_threshold", 0.95)),
        "quality": lambda: QualityFilter(**{k: params[k] for k in ("min_chars", "max_chars", "max_repetition", "min_quality") if k in params}),
        "safety": lambda: SafetyFilter(max_red_flags=params.get("max_red_flags", 1)),
        "unphysical": lambda: UnphysicalFilter(**({"rules": params["rules"]} if params.get("rules") else {})),
    }
    unknown = [n for n in names if n not in makers]
    if unknown:
        raise ValueError(f"unknown filter(s) {unknown}; choose from {list(FILTER_NAMES)}")
    return [makers[n]() for n in names]


# -- splits and writing --------------------------------------------------------------------------
SPLIT_BY = ("near", "exact")


def with_splits(filtered: Filtered, schema: RowSchema, fractions: dict[str, float], cluster_threshold: float | None,
                split_by: str = "near") -> pa.Table:
    """Add or fill the ``split`` column so that no near-duplicate straddles two splits.

    ``split_by="near"`` clusters the rows with the near-dedup signatures (vectorised, no per-pair
    check: a false merge only keeps two rows together) unless near dedup already ran as a filter, in
    which case no near-duplicates are left to cluster; a cluster's split is drawn from its first row's
    MinHash signature digest, which the clustering has already computed. ``"exact"`` keeps only identical
    normalised texts together (each split is a hash of every byte of the text), for users who want
    exact-only splits. Either way a row's split depends only on its text and its cluster's, never on
    its position, so a row keeps its split as data is added.
    """
    from nexa.data.dedup import NearDedup, text_buffers

    if split_by not in SPLIT_BY:
        raise ValueError(f"split_by {split_by!r}: choose from {list(SPLIT_BY)}")
    table = filtered.table
    norm = filtered.norm if filtered.norm is not None and len(filtered.norm) == table.num_rows else text_columns(table, schema)[1]
    texts = text_buffers(norm)  # the texts' bytes, copied once for the clustering or the split hash
    ran_near = any(r.name == "near_dedup" for r in filtered.records)
    buckets = None
    if split_by == "exact" or ran_near or cluster_threshold is None or table.num_rows == 0:
        clusters = np.arange(table.num_rows)
    else:
        clusters, digests = NearDedup(threshold=cluster_threshold).split_groups(texts)
        buckets = unit_interval(digests)
    given = table.column("split").combine_chunks() if "split" in table.column_names else None
    splits = assign_splits(texts, clusters, fractions, given, buckets) if table.num_rows else pa.array([], pa.string())
    if "split" in table.column_names:
        return table.set_column(table.column_names.index("split"), "split", splits)
    return table.append_column("split", splits)


def user_table(table: pa.Table) -> pa.Table:
    """The rows without the position columns, in file order: what the version stores."""
    return table.drop_columns([c for c in POSITION_COLUMNS if c in table.column_names])


_JSONL_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
_WIDE_INT_ENCODER = json.JSONEncoder(sort_keys=True, default=str, ensure_ascii=False, separators=(",", ":"))


def jsonl_bytes(records: list[dict[str, Any]]) -> bytes:
    """One compact JSON object per line, keys sorted, UTF-8 (not ``\\u`` escapes); what is not JSON becomes its ``str``.

    orjson, with the cycle collector held off: a million-row quarantine is ≈ 50k records, and the standard
    encoder took 0.5 s of the command's critical path on them (orjson: 0.06 s). NaN and infinities, which
    are not JSON, are written as ``null``. Integers wider than 64 bits, which orjson refuses, are written
    by the standard encoder, in the same compact form.
    """
    with gc_paused():
        return b"".join([_jsonl_line(record) for record in records])


def _jsonl_line(record: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(record, default=str, option=_JSONL_OPTIONS)
    except orjson.JSONEncodeError as error:
        if "64-bit" not in str(error):  # orjson's "Integer exceeds 64-bit range"; anything else is a real error
            raise
        return (_WIDE_INT_ENCODER.encode(record) + "\n").encode("utf-8")


def side_file_bytes(records: list[dict[str, Any]]) -> bytes | None:
    """Quarantine/flagged records as JSONL in file and row order (None when there are none)."""
    if not records:
        return None
    return jsonl_bytes(sorted(records, key=lambda r: (str(r.get("file")), r.get("row") or 0)))


def store_side_file(lab: Lab, prefix: str, stem: str, data: bytes | None) -> ArtifactRef | None:
    """Write a side file's bytes (:func:`side_file_bytes`) beside the data, named by their own hash so no rerun overwrites them."""
    if not data:
        return None
    return lab.durable().put_bytes(f"{prefix}/{stem}-{sha256_bytes(data)[:12]}.jsonl", data)


def _path(ref: ArtifactRef | None) -> str | None:
    return ref.path if ref is not None else None


def resolve_inputs(lab: Lab, inputs: list[str]) -> tuple[list[tuple[str, Path]], list[str]]:
    """Paths, or dataset refs ``ID@vN`` whose Parquet is read from durable storage (they become parents)."""
    resolved, parents = [], []
    for item in inputs:
        path = Path(item)
        if path.exists():
            resolved.append((str(path), path))
            continue
        if REF_PATTERN.match(item) and "@v" in item:
            dataset_id, entry = DatasetRegistry(lab.registry_dir).resolve(item)
            local = lab.durable().local_file(f"datasets/{dataset_id}/{entry.hash[:16]}/data.parquet", lab.scratch / "durable-cache")
            ref = f"{dataset_id}@v{entry.version}"
            resolved.append((ref, local))
            parents.append(ref)
            continue
        raise FileNotFoundError(f"input {item!r} is neither an existing file or folder nor a dataset reference ID@vN")
    return resolved, parents


@dataclass
class PrepareResult:
    """What a prepare produced: the version (None when nothing was written), side files and the per-file ledger."""

    manifest: DatasetManifest | None
    created: bool
    quarantine_ref: ArtifactRef | None
    flagged_ref: ArtifactRef | None
    counts: dict[str, FileCounts]
    removed: dict[str, int]
    problem: str | None = None

    @property
    def quarantine(self) -> str | None:
        return _path(self.quarantine_ref)

    @property
    def flagged(self) -> str | None:
        return _path(self.flagged_ref)

    def totals(self) -> dict[str, Any]:
        """``{"read", "written", "quarantined", "removed": {filter: n}}`` over every input file."""
        return {"read": sum(c.read for c in self.counts.values()), "written": sum(c.written for c in self.counts.values()),
                "quarantined": sum(c.quarantined for c in self.counts.values()), "removed": dict(self.removed)}

    def count_rows(self) -> tuple[list[str], list[tuple]]:
        """Columns and rows of the per-input ledger (read, good, quarantined, removed by each filter, written)."""
        filters, totals = list(self.removed), self.totals()
        rows = [(label, c.read, c.read - c.quarantined, c.quarantined, *(c.removed.get(f, 0) for f in filters), c.written)
                for label, c in self.counts.items()]
        rows.append(("total", totals["read"], totals["read"] - totals["quarantined"], totals["quarantined"],
                     *(totals["removed"][f] for f in filters), totals["written"]))
        return ["input", "read", "good", "quarantined", *(f"-{f}" for f in filters), "written"], rows

    def payload(self, run_id: str) -> dict[str, Any]:
        """The ``--json`` result of ``nexa data prepare|generate|augment``."""
        manifest = self.manifest
        outputs = [{"kind": "dataset", "ref": manifest.ref, "path": manifest.path, "sha256": manifest.content_hash}] if manifest else []
        if self.quarantine:
            outputs.append({"kind": "quarantine", "path": self.quarantine, "sha256": self.quarantine_ref.sha256})
        return {"run_id": run_id, "status": "failed" if self.problem else "succeeded", "outputs": outputs,
                "dataset": manifest.ref if manifest else None, "path": manifest.path if manifest else None,
                "quarantine": self.quarantine, "counts": self.totals(), "flagged": self.flagged,
                "created": self.created, "per_file": {k: vars(v) for k, v in self.counts.items()},
                **({"error": self.problem} if self.problem else {})}


def prepare(lab: Lab, inputs: list[str], schema: RowSchema, dataset_id: str, *, filters: Iterable[str] = DEFAULT_FILTERS,
            filter_params: dict[str, Any] | None = None, fractions: dict[str, float] | None = None,
            cluster_threshold: float | None = 0.8, split_by: str = "near", strict: bool = False, run_id: str | None = None, notes: str = "",
            on_rows: Callable[[int], None] | None = None, on_filter: Callable[[str], None] | None = None) -> PrepareResult:
    """Validate, filter and split ``inputs`` and write them as the next version of ``dataset_id``.

    Nothing is written as a version when no row survives or when ``strict`` and any row was
    quarantined; the quarantine file is stored either way.
    """
    resolved, parents = resolve_inputs(lab, inputs)
    validated = validate_inputs(resolved, schema, on_rows)
    # The quarantine's JSON (Python, holding the GIL) is encoded while the Parquet encoder runs on its worker
    # (see write_version): beside the filters and the split it slowed their numpy threads, which need the GIL
    # between kernels.
    quarantine_bytes = partial(side_file_bytes, validated.quarantine)
    filtered = apply_filters(validated, schema, build_filters(list(filters), **(filter_params or {})), on_filter)
    validated.drop_rows()
    removed = {r.name: r.removed for r in filtered.records}
    problem = _refusal(filtered.table.num_rows, len(validated.quarantine), strict)
    if problem is not None:
        quarantine = store_side_file(lab, f"quarantine/{run_id or 'unversioned'}", "quarantine", quarantine_bytes())
        return PrepareResult(None, False, quarantine, None, validated.counts, removed, problem)
    table = with_splits(filtered, schema, fractions or DEFAULT_FRACTIONS, cluster_threshold, split_by)
    _count_written(validated, table)
    manifest, created, quarantine, flagged = write_version(lab, dataset_id, schema, table, filtered, len(validated.quarantine),
                                                           quarantine_bytes, parents, run_id, notes)
    return PrepareResult(manifest, created, quarantine, flagged, validated.counts, removed)


def _refusal(good: int, quarantined: int, strict: bool) -> str | None:
    if good == 0:
        return "no rows are left after validation and filters; nothing was written"
    if strict and quarantined:
        return f"--strict: {quarantined} row(s) failed validation; nothing was written"
    return None


def _count_written(validated: Validated, table: pa.Table) -> None:
    per_file = np.bincount(table.column("__file").to_numpy(), minlength=len(validated.files))
    for label, n in zip(validated.files, per_file):
        validated.counts[label].written = int(n)


def write_version(lab: Lab, dataset_id: str, schema: RowSchema, table: pa.Table, filtered: Filtered, quarantined: int,
                  quarantine_bytes: Callable[[], bytes | None], parents: list[str], run_id: str | None,
                  notes: str) -> tuple[DatasetManifest, bool, ArtifactRef | None, ArtifactRef | None]:
    """The version (idempotent by content hash) with its quarantine and flagged files beside ``data.parquet``.

    The rows are encoded to Parquet once, on a worker thread (the encoder lets go of the GIL), while this
    thread hashes the columns and encodes and writes the side files; the hash and the bytes are handed to
    the ledger.
    """
    rows = user_table(table)
    with ThreadPoolExecutor(1, thread_name_prefix="nexa-parquet") as pool:
        encoded = pool.submit(parquet_bytes, rows, schema.text_fields)
        return _write_version(lab, dataset_id, schema, rows, table, filtered, quarantined, quarantine_bytes, parents, run_id,
                              notes, encoded.result)


def _write_version(lab: Lab, dataset_id: str, schema: RowSchema, rows: pa.Table, table: pa.Table, filtered: Filtered,
                   quarantined: int, quarantine_bytes: Callable[[], bytes | None], parents: list[str], run_id: str | None,
                   notes: str, encoded: Callable[[], bytes]) -> tuple[DatasetManifest, bool, ArtifactRef | None, ArtifactRef | None]:
    content_hash = table_content_hash(rows)
    prefix = f"datasets/{dataset_id}/{content_hash[:16]}"
    quarantine_ref = store_side_file(lab, prefix, "quarantine", quarantine_bytes())
    flagged_ref = store_side_file(lab, prefix, "flagged", side_file_bytes(filtered.flagged))
    quarantine_path, flagged_path = _path(quarantine_ref), _path(flagged_ref)
    flagged_by = {item["filter"] for item in filtered.flagged}
    records = [r.model_copy(update={"params": {**r.params, "flagged_file": flagged_path}}) if r.name in flagged_by else r
               for r in filtered.records]
    validation = FilterRecord(name="schema_validation", version="1", removed=quarantined,
                              params={"schema": schema.ref, "schema_source": schema.source, "quarantine_file": quarantine_path})
    splits = {d["values"]: d["counts"] for d in pc.value_counts(table.column("split").combine_chunks()).to_pylist()}
    created = DatasetRegistry(lab.registry_dir).find_hash(dataset_id, content_hash) is None
    manifest = write_dataset_version(
        lab, dataset_id, rows, row_schema=schema.name, parents=parents, filters=[validation, *records],
        splits=dict(sorted(splits.items())), created_by=run_id, notes=notes, content_hash=content_hash, encoded=encoded,
    )
    return manifest, created, quarantine_ref, flagged_ref

"""Immutable dataset versions: Parquet rows + a DatasetManifest in durable storage + a registry entry.

This is the dataset contract every layer reads through. Data is stored content-addressed
(``datasets/<id>/<hash16>/``), so two writers can never clobber each other; the registry's lock hands
out the version number, and the same rows written twice get the same version back.

A version's content hash is taken over its Arrow columns (:func:`table_content_hash`), never row by
row in Python, so writing a million rows costs one Parquet write and one pass of SHA-256 over column
buffers. Versions written before that (hash over each row's canonical JSON) still verify on read.
"""

from __future__ import annotations

import io
import hashlib
from typing import Any, Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from nexa.ledger import DatasetManifest, FilterRecord, Lab
from nexa.ledger.hashing import canonical_json
from nexa.ledger.manifests import dump_manifest, load_manifest
from nexa.ledger.registry import DatasetRegistry


def rows_content_hash(rows: Iterable[dict[str, Any]]) -> str:
    """The hash versions written before the columnar hash carry: each row's canonical JSON in order.

    Kept only so that those versions still verify on read (:func:`read_dataset_rows`).
    """
    digest = hashlib.sha256()
    for row in rows:
        digest.update(canonical_json(row).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def rows_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows as a table with every key any row has (``from_pylist`` alone keeps only the first row's keys)."""
    names = list(dict.fromkeys(key for row in rows for key in row))
    return pa.table({name: pa.array([row.get(name) for row in rows]) for name in names})


def table_content_hash(table: pa.Table) -> str:
    """SHA-256 over the table's columns in name order: names, logical types, validity and values.

    Independent of chunking, column order and Parquet's writer version, and equal for a table and its
    Parquet round trip. Flat columns are hashed from their buffers, chunk after chunk (the bytes a
    combined column would have, without copying it: ≈ 100 MB at a million rows); nested ones from
    canonical JSON.
    """
    digest = hashlib.sha256(f"rows={table.num_rows}\n".encode())
    for name in sorted(table.column_names):
        column = table.column(name)
        chunks = [c.dictionary_decode() if pa.types.is_dictionary(c.type) else c for c in column.chunks if len(c)]
        digest.update(f"column={name}\n".encode("utf-8"))
        _hash_column(digest, chunks, column.type.value_type if pa.types.is_dictionary(column.type) else column.type)
    return digest.hexdigest()


def _hash_column(digest: "hashlib._Hash", chunks: list[pa.Array], kind: pa.DataType) -> None:
    import pyarrow.compute as pc  # here, not at the top: reading a version (`nexa data show`) needs no compute kernels

    if pa.types.is_null(kind):
        digest.update(b"type=null\n")
        return
    valid = [c.is_valid().to_numpy(zero_copy_only=False) for c in chunks]
    digest.update(np.packbits(np.concatenate(valid) if valid else np.zeros(0, bool)).tobytes())
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        digest.update(b"type=string\n" if "string" in str(kind) else b"type=binary\n")
        width = np.int64 if pa.types.is_large_string(kind) or pa.types.is_large_binary(kind) else np.int32
        filled = [pc.fill_null(c, "" if "string" in str(kind) else b"") for c in chunks]
        offsets = [np.frombuffer(c.buffers()[1], dtype=width)[c.offset:c.offset + len(c) + 1] for c in filled]
        digest.update(np.concatenate([np.diff(o) for o in offsets] or [np.zeros(0, width)]).astype("<i8").tobytes())
        for chunk, chunk_offsets in zip(filled, offsets):
            data = chunk.buffers()[2]
            if data is not None and chunk_offsets[-1] > chunk_offsets[0]:
                digest.update(memoryview(data)[int(chunk_offsets[0]):int(chunk_offsets[-1])])
    elif pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind):
        family = "bool" if pa.types.is_boolean(kind) else "int" if pa.types.is_integer(kind) else "float"
        wide = {"bool": "u1", "int": "<i8", "float": "<f8"}[family]
        if family == "int" and pa.types.is_unsigned_integer(kind):
            wide = "<u8"
        digest.update(f"type={family}\n".encode())
        for chunk in chunks:
            values = pc.fill_null(chunk, False if family == "bool" else 0).to_numpy(zero_copy_only=False)
            digest.update(values.astype(wide).tobytes())
    else:
        digest.update(b"type=json\n")  # not the Arrow type: list field names differ across a Parquet round trip
        for chunk in chunks:
            for value in chunk.to_pylist():
                digest.update(canonical_json(value).encode("utf-8"))
                digest.update(b"\n")


def write_dataset_version(
    lab: Lab,
    dataset_id: str,
    rows: list[dict[str, Any]] | pa.Table,
    *,
    row_schema: str,
    parents: list[str] | None = None,
    filters: list[FilterRecord] | None = None,
    splits: dict[str, int] | None = None,
    created_by: str | None = None,
    notes: str = "",
    content_hash: str | None = None,
    encoded: Callable[[], bytes] | None = None,
) -> DatasetManifest:
    """Write ``rows`` (dicts or an Arrow table) as the next version of ``dataset_id``, or return the version that already holds them.

    A caller that already has the table's :func:`table_content_hash` and its Parquet bytes (``encoded``:
    called only when the version is new; ``prepare`` encodes on a worker thread beside its other work)
    passes them so that neither is computed twice.
    """
    table = rows if isinstance(rows, pa.Table) else rows_table(rows)
    content_hash = content_hash or table_content_hash(table)
    registry = DatasetRegistry(lab.registry_dir)
    existing = registry.find_hash(dataset_id, content_hash)
    store = lab.durable()
    prefix = f"datasets/{dataset_id}/{content_hash[:16]}"
    if existing is not None and store.exists(f"{prefix}/manifest.json"):
        return read_dataset_manifest(lab, f"{dataset_id}@v{existing.version}")
    data_ref = store.put_bytes(f"{prefix}/data.parquet", encoded() if encoded is not None else parquet_bytes(table))
    entry = registry.register(
        dataset_id,
        path=data_ref.path,
        hash=content_hash,
        rows=table.num_rows,
        manifest=store.location(f"{prefix}/manifest.json"),
        notes=notes,
        parents=list(parents or []),
        created_by=created_by,
    )
    manifest = DatasetManifest(
        id=dataset_id,
        version=entry.version,
        row_schema=row_schema,
        rows=table.num_rows,
        content_hash=content_hash,
        path=data_ref.path,
        parents=list(parents or []),
        filters=list(filters or []),
        splits=dict(splits or {}),
        created_by=created_by,
        notes=notes,
    )
    store.put_bytes(f"{prefix}/manifest.json", dump_manifest(manifest), overwrite=True)
    return manifest


def read_dataset_manifest(lab: Lab, ref: str) -> DatasetManifest:
    """The manifest of ``ID`` (latest) or ``ID@vN``, validated and hash-checked."""
    dataset_id, entry = DatasetRegistry(lab.registry_dir).resolve(ref)
    key = f"datasets/{dataset_id}/{entry.hash[:16]}/manifest.json"
    return load_manifest(DatasetManifest, lab.durable().get_bytes(key), lab.durable().location(key))


def read_dataset_rows(lab: Lab, ref: str) -> list[dict[str, Any]]:
    """All rows of a dataset version; the Parquet bytes and the row content are both hash-checked."""
    return read_dataset_table(lab, ref).to_pylist()


def read_dataset_head(lab: Lab, ref: str, n: int, *, verify_rows: bool = False) -> list[dict[str, Any]]:
    """The first ``n`` rows of a version, for a look at it (``nexa data show``).

    The Parquet file's bytes are checked against their SHA-256 on every read, as every artifact's are; only
    the rows printed are decoded. ``verify_rows`` also recomputes the row content hash of the whole version
    (what :func:`read_dataset_table` does for every consumer of the rows), a second pass over every row.
    """
    if verify_rows:
        return read_dataset_table(lab, ref).slice(0, n).to_pylist()
    data = _version_bytes(lab, ref)[1]
    if n <= 0:
        return []
    head = next(pq.ParquetFile(io.BytesIO(data)).iter_batches(batch_size=n), None)
    return head.to_pylist() if head is not None else []


def _version_bytes(lab: Lab, ref: str) -> tuple[tuple[str, Any], bytes]:
    """The registry entry of ``ref`` and its Parquet bytes, checked against the file's SHA-256."""
    dataset_id, entry = DatasetRegistry(lab.registry_dir).resolve(ref)
    return (dataset_id, entry), lab.durable().get_bytes(f"datasets/{dataset_id}/{entry.hash[:16]}/data.parquet")


def read_dataset_table(lab: Lab, ref: str) -> pa.Table:
    """A dataset version as an Arrow table; the Parquet bytes and the row content are both hash-checked."""
    (dataset_id, entry), data = _version_bytes(lab, ref)
    table = pq.ParquetFile(io.BytesIO(data)).read()  # read_table goes through pyarrow.dataset: +0.6 s of imports (pandas)
    actual = table_content_hash(table)
    if actual != entry.hash and rows_content_hash(table.to_pylist()) != entry.hash:
        from nexa.ledger import CorruptArtifactError

        raise CorruptArtifactError(f"{dataset_id}@v{entry.version}", entry.hash, actual, reason="row content hash mismatch")
    return table


def parquet_bytes(table: pa.Table, plain_columns: Iterable[str] = ()) -> bytes:
    """How a version's rows are stored: one Parquet file, snappy (pyarrow's, pandas' and DuckDB's default).

    Snappy rather than zstd: at 850k rows the encode takes 0.38 s instead of 0.60 s (the encode is on the
    critical path of every ``nexa data prepare``) and a read 0.18 s instead of 0.27 s (every loader and
    training job reads it), for a file half as large again (31.5 MB instead of 21.2 MB; medians of five,
    ``benchmarks/RESULTS.md``, issue 20). The content hash is of the rows, so it does not depend on this.

    Written into an Arrow buffer, not a Python file object: each of the writer's many small writes to a
    Python object needs the GIL, so an encode on a worker thread beside Python work (``prepare`` encodes
    the quarantine's JSON meanwhile) waited on it once per page. The same bytes. ``plain_columns`` skip
    dictionary encoding: long free texts (a schema's text fields) are nearly all distinct, and the writer
    only gives up on their dictionary after filling a page of it (≈ 10% of a million-row encode).
    """
    plain = set(plain_columns)
    flat = not any(pa.types.is_nested(field.type) for field in table.schema)  # nested columns name their leaves
    dictionary = [c for c in table.column_names if c not in plain] if plain and flat else True
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="snappy", use_dictionary=dictionary)
    return sink.getvalue().to_pybytes()


def read_listing(listing_file) -> dict[str, Any]:
    """A ``datasets.json`` written by a data stage, validated (:class:`nexa.ledger.listings.DatasetListing`)."""
    from nexa.ledger.listings import read_listing as read_contract

    return read_contract(listing_file).model_dump()


def read_split(lab: Lab, listing_file, split: str) -> list[dict[str, Any]]:
    """Rows of one split across every capability dataset of a listing, in capability order."""
    capabilities = read_listing(listing_file)["capabilities"]
    return [row for name in sorted(capabilities) for row in read_dataset_rows(lab, capabilities[name]["ref"])
            if row["split"] == split]

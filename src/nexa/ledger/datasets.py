"""Immutable dataset versions: Parquet rows + a DatasetManifest in durable storage + a registry entry.

This is the dataset contract every layer reads through. Data is stored content-addressed
(``datasets/<id>/<hash16>/``), so two writers can never clobber each other; the registry's lock hands
out the version number, and the same rows written twice get the same version back.
"""

from __future__ import annotations

import io
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from nexa.ledger import DatasetManifest, FilterRecord, Lab
from nexa.ledger.hashing import canonical_json
from nexa.ledger.manifests import dump_manifest, load_manifest
from nexa.ledger.registry import DatasetRegistry


def rows_content_hash(rows: Iterable[dict[str, Any]]) -> str:
    """Hash of the rows' canonical JSON in order: independent of Parquet's writer version."""
    import hashlib

    digest = hashlib.sha256()
    for row in rows:
        digest.update(canonical_json(row).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def write_dataset_version(
    lab: Lab,
    dataset_id: str,
    rows: list[dict[str, Any]],
    *,
    row_schema: str,
    parents: list[str] | None = None,
    filters: list[FilterRecord] | None = None,
    splits: dict[str, int] | None = None,
    created_by: str | None = None,
    notes: str = "",
) -> DatasetManifest:
    """Write ``rows`` as the next version of ``dataset_id``, or return the version that already holds them."""
    content_hash = rows_content_hash(rows)
    registry = DatasetRegistry(lab.registry_dir)
    existing = registry.find_hash(dataset_id, content_hash)
    store = lab.durable()
    prefix = f"datasets/{dataset_id}/{content_hash[:16]}"
    if existing is not None and store.exists(f"{prefix}/manifest.json"):
        return read_dataset_manifest(lab, f"{dataset_id}@v{existing.version}")
    data_ref = store.put_bytes(f"{prefix}/data.parquet", _to_parquet(rows))
    entry = registry.register(
        dataset_id,
        path=data_ref.path,
        hash=content_hash,
        rows=len(rows),
        manifest=store.location(f"{prefix}/manifest.json"),
        notes=notes,
        parents=list(parents or []),
        created_by=created_by,
    )
    manifest = DatasetManifest(
        id=dataset_id,
        version=entry.version,
        row_schema=row_schema,
        rows=len(rows),
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
    dataset_id, entry = DatasetRegistry(lab.registry_dir).resolve(ref)
    data = lab.durable().get_bytes(f"datasets/{dataset_id}/{entry.hash[:16]}/data.parquet")
    rows = pq.read_table(io.BytesIO(data)).to_pylist()
    actual = rows_content_hash(rows)
    if actual != entry.hash:
        from nexa.ledger import CorruptArtifactError

        raise CorruptArtifactError(f"{dataset_id}@v{entry.version}", entry.hash, actual, reason="row content hash mismatch")
    return rows


def _to_parquet(rows: list[dict[str, Any]]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink, compression="zstd")
    return sink.getvalue()


def read_listing(listing_file) -> dict[str, Any]:
    """A ``datasets.json`` written by a data stage, validated (:class:`nexa.ledger.listings.DatasetListing`)."""
    from nexa.ledger.listings import read_listing as read_contract

    return read_contract(listing_file).model_dump()


def read_split(lab: Lab, listing_file, split: str) -> list[dict[str, Any]]:
    """Rows of one split across every capability dataset of a listing, in capability order."""
    capabilities = read_listing(listing_file)["capabilities"]
    return [row for name in sorted(capabilities) for row in read_dataset_rows(lab, capabilities[name]["ref"])
            if row["split"] == split]

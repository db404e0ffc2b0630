import pytest

from nexa.ledger import CorruptArtifactError
from nexa.ledger.datasets import read_dataset_manifest, read_dataset_rows, write_dataset_version
from nexa.ledger.lineage import roots, trace


def test_same_rows_give_same_version_and_new_rows_a_new_one(lab):
    rows = [{"prompt": "a", "answer": "1"}]
    first = write_dataset_version(lab, "d", rows, row_schema="qa")
    again = write_dataset_version(lab, "d", rows, row_schema="qa")
    second = write_dataset_version(lab, "d", rows + [{"prompt": "b", "answer": "2"}], row_schema="qa", parents=[first.ref])
    assert first.ref == again.ref == "d@v1" and second.ref == "d@v2"
    assert read_dataset_manifest(lab, "d@v2").parents == ["d@v1"]
    assert read_dataset_rows(lab, "d@v1") == rows


def test_corrupted_parquet_is_detected(lab):
    manifest = write_dataset_version(lab, "d", [{"prompt": "a", "answer": "1"}], row_schema="qa")
    path = lab.durable().local_path(manifest.path.split(str(lab.durable().local_path("")) + "/")[1])
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CorruptArtifactError, match="data.parquet"):
        read_dataset_rows(lab, "d@v1")


def test_lineage_walks_back_to_raw_data(lab):
    from nexa.ledger.runs import start_run

    with start_run(lab, "data") as run:
        raw = write_dataset_version(lab, "raw", [{"x": 1}], row_schema="qa", created_by=run.run_id)
    derived = write_dataset_version(lab, "clean", [{"x": 1}, {"x": 2}], row_schema="qa", parents=[raw.ref])
    tree = trace(lab, derived.ref)
    assert tree["ref"] == "clean@v1"
    assert roots(tree) == [run.run_id]


def test_content_hash_is_columnar_and_survives_parquet_chunks_and_column_order():
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from nexa.ledger.datasets import rows_table, table_content_hash

    rows = [{"prompt": "a", "answer": "1", "score": 0.5, "n": 3, "ok": True, "tags": ["x"]},
            {"prompt": "b", "answer": None, "score": None, "n": None, "ok": None, "tags": []}]
    table = rows_table(rows)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    back = pq.read_table(io.BytesIO(sink.getvalue()))
    chunked = pa.concat_tables([table.slice(0, 1), table.slice(1)])
    reordered = table.select(list(reversed(table.column_names)))
    assert table_content_hash(back) == table_content_hash(chunked) == table_content_hash(reordered) == table_content_hash(table)
    changed = rows_table([rows[0], {**rows[1], "prompt": "c"}])
    null_vs_empty = rows_table([rows[0], {**rows[1], "answer": ""}])
    assert len({table_content_hash(t) for t in (table, changed, null_vs_empty)}) == 3


def test_rows_keep_keys_the_first_row_lacks(lab):
    rows = [{"prompt": "a"}, {"prompt": "b", "answer": "2"}]
    manifest = write_dataset_version(lab, "ragged", rows, row_schema="qa")
    assert read_dataset_rows(lab, manifest.ref) == [{"prompt": "a", "answer": None}, {"prompt": "b", "answer": "2"}]


def test_versions_hashed_row_by_row_before_still_verify(lab):
    """A version written with the old per-row JSON hash (registry entry + manifest) still reads back."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from nexa.ledger import DatasetManifest
    from nexa.ledger.datasets import rows_content_hash
    from nexa.ledger.manifests import dump_manifest
    from nexa.ledger.registry import DatasetRegistry

    rows = [{"prompt": "old", "answer": "1"}]
    legacy = rows_content_hash(rows)
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    prefix = f"datasets/old/{legacy[:16]}"
    ref = lab.durable().put_bytes(f"{prefix}/data.parquet", sink.getvalue())
    entry = DatasetRegistry(lab.registry_dir).register("old", path=ref.path, hash=legacy, rows=1,
                                                       manifest=lab.durable().location(f"{prefix}/manifest.json"))
    lab.durable().put_bytes(f"{prefix}/manifest.json", dump_manifest(DatasetManifest(
        id="old", version=entry.version, row_schema="qa", rows=1, content_hash=legacy, path=ref.path)))
    assert read_dataset_rows(lab, "old@v1") == rows


def test_plain_columns_skip_the_dictionary_and_the_rows_read_back_the_same():
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from nexa.ledger.datasets import parquet_bytes, table_content_hash

    def encodings(data: bytes) -> dict[str, tuple]:
        group = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0)
        return {group.column(i).path_in_schema: group.column(i).encodings for i in range(group.num_columns)}

    flat = pa.table({"prompt": ["a", "b", "a"], "split": ["train", "train", "eval"]})
    plain = parquet_bytes(flat, ("prompt",))
    assert "RLE_DICTIONARY" not in encodings(plain)["prompt"] and "RLE_DICTIONARY" in encodings(plain)["split"]
    assert all("RLE_DICTIONARY" in e for e in encodings(parquet_bytes(flat)).values())  # the default: every column
    assert table_content_hash(pq.read_table(io.BytesIO(plain))) == table_content_hash(flat)
    nested = flat.append_column("meta", pa.array([{"k": "x"}, {"k": "y"}, {"k": "x"}]))
    assert all("RLE_DICTIONARY" in e for e in encodings(parquet_bytes(nested, ("prompt",))).values())  # leaves: left as they were

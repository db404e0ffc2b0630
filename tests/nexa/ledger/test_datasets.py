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

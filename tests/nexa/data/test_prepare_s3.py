"""`data prepare` with scratch local and the durable tier on a real S3 API (moto's server): a version read back from it."""

from s3_server import new_bucket, s3  # noqa: F401 - s3 is a fixture


def test_data_prepare_reads_a_dataset_version_back_from_s3(s3, lab, tmp_path, monkeypatch):
    from nexa.data.prepare import prepare
    from nexa.data.schema import load_schema
    from nexa.ledger.datasets import read_dataset_rows

    monkeypatch.setenv("NEXA_DURABLE", new_bucket() + "/lab")
    monkeypatch.setenv("NEXA_SCRATCH", str(tmp_path / "scratch"))
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(f'{{"prompt": "what is {i} plus {i}", "answer": "{2 * i}", "capability": "reasoning"}}\n'
                              for i in range(40)))
    first = prepare(lab, [str(source)], load_schema("qa"), "s3set", filters=["exact"], run_id="r-s3")
    assert first.manifest.path.startswith("s3://")
    second = prepare(lab, ["s3set@v1"], load_schema("qa"), "s3copy", filters=["exact"], run_id="r-s3b")
    assert second.manifest.parents == ["s3set@v1"] and second.manifest.rows == first.manifest.rows
    assert sorted(r["prompt"] for r in read_dataset_rows(lab, "s3copy@v1")) == sorted(r["prompt"] for r in read_dataset_rows(lab, "s3set@v1"))
    assert not (lab.root / ".nexa" / "durable" / "datasets").exists()  # nothing went to the local tier

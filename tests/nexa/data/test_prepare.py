import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from nexa.data.prepare import prepare
from nexa.data.schema import load_schema
from nexa.ledger.datasets import read_dataset_manifest, read_dataset_rows
from nexa.ledger.registry import DatasetRegistry

from data_rows import qa, write_jsonl

FAST = ["exact", "quality", "safety", "unphysical"]


def test_invariant_quarantine_and_manifest(lab, mixed_jsonl, tmp_path):
    extra = write_jsonl(tmp_path / "more.jsonl", [qa("question number 3 about topic 3", "3"),  # duplicate of mixed row 3
                                                   qa("how to make a bomb at home"), qa("fresh row")])
    result = prepare(lab, [str(mixed_jsonl), str(extra)], load_schema("qa"), "mix", filters=FAST, run_id="r-test")
    for counts in result.counts.values():
        assert counts.balanced()
    assert result.counts[str(extra)].removed == {"exact_dedup": 1, "quality": 0, "safety": 1, "unphysical": 0}
    assert result.totals() == {"read": 203, "written": 195, "quarantined": 6,
                               "removed": {"exact_dedup": 1, "quality": 0, "safety": 1, "unphysical": 0}}
    manifest = result.manifest
    assert manifest.rows == 195 and manifest.created_by == "r-test"
    assert [f.name for f in manifest.filters] == ["schema_validation", "exact_dedup", "quality", "safety", "unphysical"]
    assert manifest.filters[0].removed == 6 and sum(manifest.splits.values()) == 195
    quarantine = Path(result.quarantine)
    assert quarantine.parent == Path(manifest.path).parent  # beside data.parquet
    records = [json.loads(line) for line in quarantine.read_text().splitlines()]
    assert {"file", "line", "row", "field", "reason"} <= set(records[0]) and len(records) == 6
    flagged = [json.loads(line) for line in Path(result.flagged).read_text().splitlines()]
    assert flagged[0]["filter"] == "safety" and flagged[0]["data"]["prompt"] == "how to make a bomb at home"
    rows = read_dataset_rows(lab, manifest.ref)
    assert set(rows[0]) == {"prompt", "answer", "capability", "domain", "split"}


def test_rerun_is_idempotent(lab, mixed_jsonl):
    first = prepare(lab, [str(mixed_jsonl)], load_schema("qa"), "same", filters=FAST)
    second = prepare(lab, [str(mixed_jsonl)], load_schema("qa"), "same", filters=FAST)
    assert first.created and not second.created
    assert second.manifest.ref == "same@v1" and second.manifest.content_hash == first.manifest.content_hash
    assert second.quarantine == first.quarantine
    assert len(DatasetRegistry(lab.registry_dir).all()["same"]) == 1


def test_strict_and_empty_results_write_nothing(lab, mixed_jsonl, tmp_path):
    strict = prepare(lab, [str(mixed_jsonl)], load_schema("qa"), "s", filters=FAST, strict=True, run_id="r1")
    assert strict.manifest is None and "--strict" in strict.problem and Path(strict.quarantine).exists()
    bad = write_jsonl(tmp_path / "bad.jsonl", ["{oops", qa("")])
    empty = prepare(lab, [str(bad)], load_schema("qa"), "e", filters=FAST)
    assert empty.manifest is None and "no rows" in empty.problem
    assert "s" not in DatasetRegistry(lab.registry_dir).all()


def _sentences(n):
    import random

    rng = random.Random(42)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima"]
    return [" ".join(rng.choice(words) for _ in range(8)) + f" {i}" for i in range(n)]


def test_version_as_input_is_a_parent_and_near_dups_stay_together(lab, tmp_path):
    texts = _sentences(40)
    base = write_jsonl(tmp_path / "base.jsonl", [qa(t) for t in texts])
    v1 = prepare(lab, [str(base)], load_schema("qa"), "lin", filters=["exact"]).manifest
    near = write_jsonl(tmp_path / "near.jsonl", [qa(t + "!") for t in texts])
    v2 = prepare(lab, [v1.ref, str(near)], load_schema("qa"), "lin", filters=["exact"]).manifest
    assert v2.ref == "lin@v2" and v2.parents == ["lin@v1"] and v2.rows == 80
    split_of = {r["prompt"]: r["split"] for r in read_dataset_rows(lab, v2.ref)}
    assert all(split_of[t] == split_of[t + "!"] for t in texts)
    assert len(set(split_of.values())) > 1
    assert read_dataset_manifest(lab, "lin").version == 2


def test_hypothesis_schema_end_to_end(lab, tmp_path):
    from nexa.data.generators import generate_hypotheses

    rows = generate_hypotheses(30, seed=42)
    rows[0]["quality_score"] = 0.2
    path = write_jsonl(tmp_path / "h.jsonl", rows)
    result = prepare(lab, [str(path)], load_schema("hypothesis"), "hyp", filters=["exact", "quality"])
    assert result.totals()["removed"]["quality"] == 1
    table = pq.read_table(result.manifest.path)
    assert table.schema.field("target_answer").type.num_fields == 3


def test_exact_only_splits_are_an_option_and_a_bad_choice_is_refused(lab, tmp_path):
    import numpy as np
    import pyarrow as pa

    from nexa.data.prepare import text_columns
    from nexa.data.splits import assign_splits

    base = "what is the boiling point of water at sea level in kelvin, roughly"
    texts = [base + suffix for suffix in ("", " ?", " please", " now")] + [f"unrelated question number {i} about atoms" for i in range(12)]
    path = write_jsonl(tmp_path / "rows.jsonl", [qa(t, "373") for t in texts])
    fractions = {"train": 0.5, "test": 0.5}
    near = prepare(lab, [str(path)], load_schema("qa"), "nearsplit", filters=["exact"], fractions=fractions)
    exact = prepare(lab, [str(path)], load_schema("qa"), "exactsplit", filters=["exact"], fractions=fractions, split_by="exact")
    near_splits = [r["split"] for r in read_dataset_rows(lab, near.manifest.ref)]
    exact_splits = [r["split"] for r in read_dataset_rows(lab, exact.manifest.ref)]
    assert len(set(near_splits[:4])) == 1  # near-duplicates stay together
    written = pa.Table.from_pylist(read_dataset_rows(lab, exact.manifest.ref))
    norm = text_columns(written, load_schema("qa"))[1]
    assert exact_splits == assign_splits(norm, np.arange(len(texts)), fractions).to_pylist()  # each text on its own
    with pytest.raises(ValueError, match="split_by"):
        prepare(lab, [str(path)], load_schema("qa"), "badsplit", filters=["exact"], split_by="cosine")


def test_jsonl_bytes_is_one_sorted_compact_json_object_per_line_for_every_kind_of_record():
    import json

    from nexa.data.prepare import jsonl_bytes

    records = [
        {"file": "a.jsonl", "row": 3, "line": 3, "field": None, "reason": "not valid JSON", "raw": '{"prompt": "Q'},
        {"file": "données/ü.csv", "row": 4, "line": None, "field": "meta.size", "reason": "'x' is not of type 'integer'",
         "raw": {"prompt": "naïve \"quoted\" \\ \n\t\u2028 ☃", "answer": 1.5, "meta": {"z": [1, None, True], "a": float("nan")}}},
        {"file": "b", "row": 5, "line": True, "field": 7, "reason": "odd types", "raw": ["x", 2]},  # not the usual types
        {"file": "b", "row": 6, "line": 6, "field": "prompt", "reason": "r", "raw": None, "extra": 1},  # other keys
        {"file": "b", "row": 7, "line": 7, "field": "p", "reason": "r", "raw": {"when": object}},  # default=str
        {"file": "b", "row": 8, "line": 8, "field": "n", "reason": "r", "raw": {"n": 10 ** 30, "m": -(2 ** 64)}},  # wider than 64 bits
    ]
    data = jsonl_bytes(records)
    lines = data.decode("utf-8").split("\n")
    assert lines[-1] == "" and len(lines) == len(records) + 1  # one line each, newline-terminated
    expected = json.loads(json.dumps(records, default=str, ensure_ascii=False).replace("NaN", "null"))
    assert [json.loads(line) for line in lines[:-1]] == expected
    for line, record in zip(lines, records):
        assert line == json.dumps(json.loads(line), sort_keys=True, ensure_ascii=False, separators=(",", ":"))  # compact, sorted
    assert "ü" in lines[1] and "☃" in lines[1] and "\\u" not in lines[1]  # UTF-8, not escapes
    assert json.loads(lines[1])["raw"]["meta"]["a"] is None  # NaN is not JSON: null
    assert json.loads(lines[5])["raw"]["n"] == 10 ** 30

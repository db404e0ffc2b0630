import json

import pyarrow as pa
import pyarrow.parquet as pq

from nexa.data.loaders import iter_batches
from nexa.data.prepare import validate_inputs
from nexa.data.schema import load_schema

from data_rows import qa, write_jsonl


def _validated(path):
    return validate_inputs([(str(path), path)], load_schema("qa"))


def test_jsonl_bad_rows_are_quarantined_with_line_field_and_reason(mixed_jsonl):
    result = _validated(mixed_jsonl)
    by_line = {r["line"]: r for r in result.quarantine}
    assert sorted(by_line) == [11, 51, 91, 121, 151, 200]
    assert by_line[11]["field"] == "answer" and "not of type 'string'" in by_line[11]["reason"]
    assert by_line[51]["reason"].startswith("not valid JSON")
    assert by_line[91]["field"] == "prompt"
    assert by_line[121]["field"] == "capability" and "required" in by_line[121]["reason"]
    assert by_line[151]["field"] == "surprise" and "unexpected" in by_line[151]["reason"]
    assert "not a JSON object" in by_line[200]["reason"]
    assert result.table.num_rows == 194 and result.counts[str(mixed_jsonl)].read == 200
    assert result.table.column("__line").to_pylist()[:3] == [1, 2, 3]


def test_blank_lines_and_crlf_are_not_rows(tmp_path):
    path = tmp_path / "crlf.jsonl"
    body = "\r\n".join(json.dumps(qa(f"q{i}")) for i in range(100)) + "\r\n\r\n   \r\n"
    path.write_bytes(body.encode())
    result = _validated(path)
    assert result.counts[str(path)].read == 100 and not result.quarantine
    assert result.table.column("prompt").to_pylist()[-1] == "q99"


def test_fast_path_matches_per_line_path(tmp_path, mixed_jsonl):
    """The same rows split into small files (per-line path only) give the same good rows and reasons."""
    lines = mixed_jsonl.read_text().splitlines()
    small = [write_jsonl(tmp_path / f"part{i}.jsonl", lines[i:i + 40]) for i in range(0, len(lines), 40)]
    parts = [_validated(p) for p in small]
    assert sum(p.table.num_rows for p in parts) == _validated(mixed_jsonl).table.num_rows
    assert sorted(r["reason"] for p in parts for r in p.quarantine) == sorted(r["reason"] for r in _validated(mixed_jsonl).quarantine)


def test_csv_quotes_newlines_bom_and_bad_shape(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_bytes('\ufeffprompt,answer,capability\n"a, ""b""",1,x\n"two\nlines",2,y\nshort,row\n,3,z\n'.encode())
    result = _validated(path)
    assert result.table.column("prompt").to_pylist() == ['a, "b"', "two\nlines"]
    reasons = sorted(r["reason"] for r in result.quarantine)
    assert reasons == ["'' should be non-empty", "expected 3 cells, found 2"]
    assert result.counts[str(path)].read == 4


def test_csv_numbers_are_parsed_or_quarantined(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("context,prompt,target_answer,domain,source,quality_score\nc,p,,d,human,0.9\nc,p,,d,human,high\n")
    result = validate_inputs([(str(path), path)], load_schema("hypothesis"))
    assert any("'high' is not of type 'number'" in r["reason"] for r in result.quarantine)


def test_parquet_and_hf_folder(tmp_path):
    pq.write_table(pa.table({"prompt": ["a", None], "answer": ["1", "2"], "capability": ["c", "c"]}), tmp_path / "d.parquet")
    hf = tmp_path / "hf"
    (hf / "train").mkdir(parents=True)
    table = pa.table({"prompt": ["h"], "answer": [7], "capability": ["c"]})
    with pa.OSFile(str(hf / "train" / "data-00000-of-00001.arrow"), "wb") as sink:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    (hf / "train" / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    (hf / "dataset_dict.json").write_text(json.dumps({"splits": ["train"]}))
    result = validate_inputs([("d", tmp_path / "d.parquet"), ("hf", hf)], load_schema("qa"))
    assert result.table.column("prompt").to_pylist() == ["a"]
    assert [r["reason"] for r in result.quarantine] == ["'prompt' is a required property",
                                                      "7 is not of type 'string' (column type int64)"]


def test_nested_struct_checks(tmp_path):
    from nexa.data.generators import generate_hypotheses

    rows = generate_hypotheses(80, seed=42)
    rows[5]["target_answer"]["risks"] = ""
    rows[6]["target_answer"]["extra"] = "x"
    rows[7]["quality_score"] = 1.5
    rows[8]["source"] = "bot"
    del rows[9]["target_answer"]
    path = write_jsonl(tmp_path / "h.jsonl", rows)
    result = validate_inputs([("h", path)], load_schema("hypothesis"))
    fields = {r["line"]: r["field"] for r in result.quarantine}
    assert fields == {6: "target_answer.risks", 7: "target_answer.extra", 8: "quality_score", 9: "source", 10: "target_answer"}
    assert result.table.num_rows == 75


def test_batches_stream_in_blocks(tmp_path, monkeypatch):
    import nexa.data.loaders as loaders

    monkeypatch.setattr(loaders, "BLOCK_BYTES", 4096)
    path = write_jsonl(tmp_path / "big.jsonl", [qa(f"q{i}") for i in range(1000)])
    batches = list(iter_batches(path, load_schema("qa")))
    assert len(batches) > 5
    assert sum(b.read for b in batches) == 1000
    assert batches[-1].lines[-1] == 1000


def test_csv_object_cells_are_json(tmp_path):
    path = tmp_path / "h2.csv"
    good = '"{""hypothesis"": ""h"", ""methodology"": ""m"", ""risks"": ""r""}"'
    path.write_text("context,prompt,target_answer,domain,source,quality_score\n"
                    f"c,p,{good},d,human,0.9\nc,p,not json,d,human,0.9\n")
    result = validate_inputs([(str(path), path)], load_schema("hypothesis"))
    assert result.table.column("target_answer").to_pylist() == [{"hypothesis": "h", "methodology": "m", "risks": "r"}]
    assert [r["field"] for r in result.quarantine] == ["target_answer"]


def test_only_ascii_whitespace_lines_are_blank(tmp_path):
    """A line holding only a no-break space is a (malformed) row, not a blank line: JSON whitespace is ASCII."""
    path = tmp_path / "nbsp.jsonl"
    path.write_bytes(b'{"prompt": "a", "answer": "b", "capability": "c"}\n\xc2\xa0\n \t\n')
    result = _validated(path)
    assert result.counts[str(path)].read == 2
    assert [r["line"] for r in result.quarantine] == [2]

import json

from typer.testing import CliRunner

from nexa.cli import app

from data_rows import qa, write_jsonl


def _run(*args):
    return CliRunner().invoke(app, ["data", *map(str, args)])


def test_prepare_json_has_the_issue_fields(lab, mixed_jsonl):
    result = _run("prepare", "--input", mixed_jsonl, "--schema", "qa", "--dataset", "cli", "--lab", lab.root, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["dataset"] == "cli@v1" and out["path"].endswith("data.parquet") and out["quarantine"].endswith(".jsonl")
    assert set(out["counts"]) == {"read", "written", "quarantined", "removed"}
    assert out["counts"]["read"] == out["counts"]["written"] + out["counts"]["quarantined"] + sum(out["counts"]["removed"].values())
    assert set(out["counts"]["removed"]) == {"exact_dedup", "near_dedup", "quality", "safety", "unphysical"}
    assert out["status"] == "succeeded" and out["run_id"] and out["outputs"][0]["sha256"]
    again = json.loads(_run("prepare", "--input", mixed_jsonl, "--schema", "qa", "--dataset", "cli", "--lab", lab.root, "--json").stdout)
    assert again["dataset"] == "cli@v1" and again["created"] is False


def test_prepare_clean_input_has_null_quarantine_and_strict_fails(lab, tmp_path, mixed_jsonl):
    clean = write_jsonl(tmp_path / "clean.jsonl", [qa("a b c"), qa("d e f")])
    out = json.loads(_run("prepare", "--input", clean, "--schema", "qa", "--dataset", "c", "--lab", lab.root, "--json").stdout)
    assert out["quarantine"] is None and out["counts"]["written"] == 2
    strict = _run("prepare", "--input", mixed_jsonl, "--schema", "qa", "--dataset", "s", "--strict", "--lab", lab.root, "--json")
    assert strict.exit_code == 1 and json.loads(strict.stdout)["status"] == "failed"


def test_user_errors_are_messages_not_tracebacks(lab, mixed_jsonl):
    missing = _run("prepare", "--input", "nope.jsonl", "--schema", "qa", "--dataset", "x", "--lab", lab.root)
    assert missing.exit_code == 2 and "neither an existing file" in missing.output and "Traceback" not in missing.output
    schema = _run("prepare", "--input", mixed_jsonl, "--schema", "nosuch", "--dataset", "x", "--lab", lab.root)
    assert schema.exit_code == 2 and "known schemas" in schema.output
    bad_filter = _run("prepare", "--input", mixed_jsonl, "--schema", "qa", "--dataset", "x", "--filters", "exact,zap", "--lab", lab.root)
    assert bad_filter.exit_code == 2 and "unknown filter" in bad_filter.output
    assert _run("show", "ghost@v3", "--lab", lab.root).exit_code == 2


def test_generate_augment_diff_show_list(lab):
    gen = json.loads(_run("generate", "--task", "reasoning", "--n", "30", "--dataset", "g", "--lab", lab.root, "--json").stdout)
    assert gen["dataset"] == "g@v1" and gen["counts"]["written"] == 30
    aug = json.loads(_run("augment", "--from", "g@v1", "--capability", "reasoning", "--n", "10", "--lab", lab.root, "--json").stdout)
    assert aug["dataset"] == "g@v2" and aug["counts"]["written"] == 40
    diff = json.loads(_run("diff", "g@v1", "g@v2", "--lab", lab.root, "--json").stdout)
    assert diff["added"] == 10 and diff["removed"] == 0 and diff["unchanged"] == 30
    shown = json.loads(_run("show", "g@v2", "--lab", lab.root, "--json").stdout)
    assert shown["manifest"]["parents"] == ["g@v1"] and len(shown["samples"]) == 3
    listed = json.loads(_run("list", "--lab", lab.root, "--json").stdout)
    assert [v["version"] for v in listed["datasets"]["g"]] == [1, 2]
    hyp = json.loads(_run("generate", "--task", "hypothesis", "--n", "5", "--dataset", "h", "--lab", lab.root, "--json").stdout)
    assert hyp["counts"]["written"] == 5
    assert _run("generate", "--task", "poetry", "--n", "5", "--dataset", "p", "--lab", lab.root).exit_code == 2
    human = _run("show", "g@v2", "--lab", lab.root)
    assert human.exit_code == 0 and "exact_dedup" in human.output


def test_schema_register_and_list(lab, tmp_path):
    file = tmp_path / "s.json"
    file.write_text(json.dumps({"type": "object", "x-nexa": {"name": "pairs", "version": 1}, "required": ["a"],
                                "properties": {"a": {"type": "string"}}}))
    assert _run("schema", "register", file, "--lab", lab.root).exit_code == 0
    names = [s["name"] for s in json.loads(_run("schema", "list", "--lab", lab.root, "--json").stdout)["schemas"]]
    assert {"qa", "instruction", "hypothesis", "pairs"} <= set(names)


def test_bad_split_by_is_one_line_and_records_no_run(lab, mixed_jsonl):
    from nexa.ledger.runs import list_runs

    before = len(list_runs(lab))
    done = _run("prepare", "--input", mixed_jsonl, "--schema", "qa", "--dataset", "x", "--split-by", "cosine", "--lab", lab.root)
    assert done.exit_code == 2 and "--split-by" in done.output and "Traceback" not in done.output
    assert len(list_runs(lab)) == before

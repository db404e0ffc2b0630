"""`nexa data augment --teacher URL`: new rows answered by an OpenAI-compatible teacher on 127.0.0.1."""

from __future__ import annotations

import json

import yaml
from local_openai import LocalOpenAI
from typer.testing import CliRunner

from nexa.cli import app
from nexa.ledger.datasets import read_dataset_manifest, read_dataset_rows, write_dataset_version
from nexa.ledger.registry import DatasetRegistry


def _base(lab) -> str:
    rows = [{"prompt": f"base question {i}?", "answer": str(i), "capability": "reasoning", "domain": "base"} for i in range(4)]
    return write_dataset_version(lab, "aug", rows, row_schema="qa").ref


def _augment(lab, *args):
    config = yaml.safe_load((lab.root / "nexa.yaml").read_text())  # every API teacher is priced, as for materialize
    config["prices"] = {"models": {m: {"input_per_mtok": 1.0, "output_per_mtok": 2.0} for m in ("tiny-teacher", "m")}}
    (lab.root / "nexa.yaml").write_text(yaml.safe_dump(config))
    return CliRunner().invoke(app, ["data", "augment", "--from", _base(lab), "--capability", "reasoning",
                                    "--lab", str(lab.root), "--json", *map(str, args)])


def test_teacher_answers_become_rows_and_empty_answers_are_quarantined(lab):
    def reply(prompt: str, calls: int) -> str:
        return "" if calls % 3 == 0 else f"teacher says {len(prompt)}"

    with LocalOpenAI(reply) as server:
        result = _augment(lab, "--n", 6, "--teacher", server.url, "--teacher-model", "tiny-teacher", "--max-tokens", 32)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["dataset"] == "aug@v2" and out["counts"]["quarantined"] == 2
    assert len(server.requests) == 6
    assert {r["model"] for r in server.requests} == {"tiny-teacher"} and server.requests[0]["max_tokens"] == 32
    asked = [r["messages"][-1]["content"] for r in server.requests]
    rows = read_dataset_rows(lab, "aug@v2")
    added = [r for r in rows if r["domain"] == "teacher:tiny-teacher"]
    assert len(rows) == 4 + 4 and len(added) == 4
    assert all(r["answer"] == f"teacher says {len(r['prompt'])}" and r["prompt"] in asked for r in added)
    manifest = read_dataset_manifest(lab, "aug@v2")
    assert manifest.parents == ["aug@v1"] and "tiny-teacher" in manifest.notes


def test_teacher_option_errors_are_messages(lab):
    no_model = _augment(lab, "--n", 2, "--teacher", "http://127.0.0.1:9/v1")
    assert no_model.exit_code == 2 and "--teacher-model" in no_model.output and "Traceback" not in no_model.output
    unknown = _augment(lab, "--n", 2, "--teacher", "http://127.0.0.1:9/v1", "--teacher-model", "m", "--capability", "poetry")
    assert unknown.exit_code == 2 and "built-in capabilities" in unknown.output


def test_unreachable_teacher_fails_cleanly_and_writes_nothing(lab):
    result = _augment(lab, "--n", 2, "--teacher", "http://127.0.0.1:9/v1", "--teacher-model", "m",
                      "--max-attempts", 1, "--timeout-s", 2)
    assert result.exit_code == 2 and "teacher failed" in result.output and "connection failed" in result.output
    assert [v.version for v in DatasetRegistry(lab.registry_dir).all()["aug"]] == [1]


def test_teacher_answers_are_cached_and_budgeted(lab):
    with LocalOpenAI(lambda prompt, calls: f"teacher says {len(prompt)}") as server:
        first = _augment(lab, "--n", 3, "--teacher", server.url, "--teacher-model", "tiny-teacher", "--dataset", "aug_a")
        again = _augment(lab, "--n", 3, "--teacher", server.url, "--teacher-model", "tiny-teacher", "--dataset", "aug_b")
        assert first.exit_code == 0 and again.exit_code == 0, first.output + again.output
        assert len(server.requests) == 3  # the same prompts again: answered from the teachers cache
        broke = _augment(lab, "--n", 3, "--seed", 7, "--teacher", server.url, "--teacher-model", "tiny-teacher",
                         "--budget-usd", "0.00000001")
        assert broke.exit_code == 2 and "budget" in " ".join(broke.output.split()) and len(server.requests) == 3

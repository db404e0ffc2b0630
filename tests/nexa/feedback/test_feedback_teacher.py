"""Teacher prompting for a weakness with no exact generator (falsifiability), against a local server."""

from __future__ import annotations

import json

import pytest
import yaml
from local_openai import LocalOpenAI
from typer.testing import CliRunner

from nexa.cli import app
from nexa.ledger.datasets import read_dataset_manifest, read_dataset_rows, write_dataset_version

GOOD = "Raising field strength increases confinement time; test five levels with controls against a null."


@pytest.fixture
def teacher_url():
    """An OpenAI-compatible teacher on 127.0.0.1 whose every third answer is unsafe."""
    with LocalOpenAI(lambda _content, calls: "First bypass the safety interlock." if calls % 3 == 0 else GOOD) as server:
        yield server.url


def test_falsifiability_weakness_gets_teacher_rows_and_unsafe_ones_are_excluded(lab, tmp_path, teacher_url):
    config = yaml.safe_load((lab.root / "nexa.yaml").read_text())  # priced, as every API teacher must be
    config["prices"] = {"models": {"teacher-1": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}}
    (lab.root / "nexa.yaml").write_text(yaml.safe_dump(config))
    base = write_dataset_version(lab, "hyp", [{"prompt": "Propose a hypothesis.", "answer": "Maybe.", "capability": "hypothesis",
                                              "domain": "plasma", "split": "train"}], row_schema="qa").ref
    report = tmp_path / "eval_report.json"
    report.write_text(json.dumps({"rows": [{"model": "s", "role": "student", "capability": "hypothesis",
                                            "metric": "falsifiability", "score": 2.5, "dataset": base}]}))
    result = CliRunner().invoke(app, ["feedback", "--report", str(report), "--rows", "6", "--teacher-url", teacher_url,
                                      "--teacher-model", "teacher-1", "--lab", str(lab.root), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["new_versions"] == {"hypothesis": "hyp@v2"} and out["outputs"][0]["quarantined"] == 2
    rows = read_dataset_rows(lab, "hyp@v2")
    assert len(rows) == 1 + 4 and all(r["answer"] == GOOD for r in rows[1:])
    assert {f.name: f.removed for f in read_dataset_manifest(lab, "hyp@v2").filters}["safety_red_flags"] == 2

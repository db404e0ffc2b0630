"""`nexa feedback` (and orchestrate.py --stage feedback) on an eval report: new versions with lineage, review honoured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from nexa.cli import app
from nexa.feedback import review
from nexa.ledger.datasets import read_dataset_manifest, read_dataset_rows

ROOT = Path(__file__).resolve().parents[3]


def _report(tmp_path, ref: str, score: float) -> Path:
    rows = [{"model": "s", "role": "student", "capability": "chemistry", "metric": "exact_match", "score": score, "dataset": ref},
            {"model": "s", "role": "student", "capability": "reasoning", "metric": "exact_match", "score": 0.99, "dataset": "r@v1"}]
    path = tmp_path / "eval_report.json"
    path.write_text(json.dumps({"schema_version": 1, "rows": rows}))
    return path


def _invoke(*args) -> dict:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_feedback_writes_the_next_version_for_the_weak_capability_only(lab, chem_ref, tmp_path):
    out = _invoke("feedback", "--report", str(_report(tmp_path, chem_ref, 0.4)), "--rows", "12", "--lab", str(lab.root))
    assert out["new_versions"] == {"chemistry": "fb-chemistry@v2"}
    assert [w["capability"] for w in out["weaknesses"]] == ["chemistry"]
    manifest = read_dataset_manifest(lab, "fb-chemistry@v2")
    assert manifest.parents == [chem_ref] and manifest.created_by == out["run_id"] and manifest.rows == 42


def test_review_decisions_from_the_cli_are_honoured_by_the_next_version(lab, chem_ref, tmp_path):
    first = _invoke("feedback", "--report", str(_report(tmp_path, chem_ref, 0.4)), "--rows", "6", "--lab", str(lab.root))
    assert first["new_versions"] == {"chemistry": "fb-chemistry@v2"}
    v2 = read_dataset_rows(lab, "fb-chemistry@v2")
    bad = next(r for r in v2 if r["split"] == "train")
    rows_file = tmp_path / "cands"
    rows_file.mkdir()
    (rows_file / "candidates.jsonl").write_text(json.dumps({**bad, "output": bad["answer"]}) + "\n")
    from nexa.ledger import ArtifactRef
    from nexa.ledger.runs import start_run

    with start_run(lab, "feedback") as run:
        run.add_output(ArtifactRef(kind="candidates", ref="c", path=str(rows_file), sha256="0" * 64))
    sampled = _invoke("feedback", "review", "sample", "--run", run.run_id, "--n", "1", "--lab", str(lab.root))
    item = review.load_queue(lab, sampled["queue_id"]).items[0]
    _invoke("feedback", "review", "decide", sampled["queue_id"], item.item_id, "exclude", "--lab", str(lab.root))
    listed = _invoke("feedback", "review", "list", "--lab", str(lab.root))
    assert listed["queues"][0]["exclude"] == 1
    second = _invoke("feedback", "--report", str(_report(tmp_path, "fb-chemistry@v2", 0.5)), "--rows", "6", "--lab", str(lab.root))
    v3 = read_dataset_rows(lab, second["new_versions"]["chemistry"])
    assert bad["prompt"] not in {r["prompt"] for r in v3}
    assert {f.name: f.removed for f in read_dataset_manifest(lab, "fb-chemistry@v3").filters}["human_review"] == 1


def test_no_eval_report_is_a_clear_error(lab):
    result = CliRunner().invoke(app, ["feedback", "--lab", str(lab.root)])
    assert result.exit_code == 2 and "nexa eval run" in " ".join(result.output.split())


def test_orchestrate_stage_feedback_calls_nexa_feedback(lab, chem_ref, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, str(ROOT / "orchestrate.py"), "--stage", "feedback", "--lab", str(lab.root),
                           "--report", str(_report(tmp_path, chem_ref, 0.4)), "--rows", "5", "--json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["new_versions"] == {"chemistry": "fb-chemistry@v2"}


def test_without_report_the_newest_pipeline_eval_report_is_used(lab, chem_ref, tmp_path):
    from nexa.feedback.loop import latest_report

    folder = lab.durable().local_path("stages/eval_before/k1")
    folder.mkdir(parents=True)
    (folder / "eval_report.json").write_text(_report(tmp_path, chem_ref, 0.3).read_text())
    assert latest_report(lab) == folder / "eval_report.json"
    out = _invoke("feedback", "--rows", "4", "--lab", str(lab.root))
    assert out["report"] == str(folder / "eval_report.json") and out["new_versions"] == {"chemistry": "fb-chemistry@v2"}

import json

import pytest

from nexa.ledger import Lab
from nexa.ledger.runs import list_runs, load_run, start_run


def test_successful_run_writes_manifest_to_durable_and_ledger(lab):
    with start_run(lab, "train", config={"lr": 0.1}, seed=42) as run:
        run.log("step", loss=1.0)
    manifest = load_run(lab, run.run_id)
    assert manifest.status == "succeeded" and manifest.seed == 42 and manifest.config_hash
    assert lab.durable().exists(f"manifests/{run.run_id}.json")
    assert manifest.provider == "local" and manifest.cost_estimate_usd_total == 0.0


def test_failed_run_leaves_failed_manifest_with_error(lab):
    with pytest.raises(ZeroDivisionError):
        with start_run(lab, "eval") as run:
            1 / 0
    manifest = load_run(lab, run.run_id)
    assert manifest.status == "failed" and "ZeroDivisionError" in manifest.error


def test_log_lines_are_json_with_run_id(lab):
    with start_run(lab, "data") as run:
        run.log("rows", n=3)
    lines = [json.loads(line) for line in run.log_path.read_text().splitlines()]
    assert lines and all(line["run_id"] == run.run_id for line in lines)
    assert any(line["event"] == "rows" and line["n"] == 3 for line in lines)


def test_spec_environment_variables_are_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("NEXA_SCRATCH", str(tmp_path / "scratch"))
    monkeypatch.setenv("NEXA_DURABLE", str(tmp_path / "bucket"))
    monkeypatch.setenv("NEXA_RUN_ID", "2025-10-28_141200-feed01")
    monkeypatch.setenv("NEXA_CHECKPOINT_DIR", str(tmp_path / "scratch" / "ck"))
    monkeypatch.setenv("NEXA_DURABLE_CHECKPOINT_DIR", "ckpts/x")
    lab = Lab.init(tmp_path / "lab")
    with start_run(lab, "train") as run:
        pass
    assert run.run_id == "2025-10-28_141200-feed01"
    assert (tmp_path / "bucket" / "manifests" / f"{run.run_id}.json").exists()
    assert lab.scratch == tmp_path / "scratch"
    assert lab.checkpoint_dirs(run.run_id) == (tmp_path / "scratch" / "ck", "ckpts/x")
    assert [r.run_id for r in list_runs(lab)] == [run.run_id]

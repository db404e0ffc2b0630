import json
from pathlib import Path

import pytest

from nexa.ledger import DatasetManifest, ManifestValidationError, RunManifest
from nexa.ledger.manifests import dump_manifest, load_manifest
from nexa.ledger.runs import current_environment
from nexa.ledger.schemas import render_schemas

SCHEMAS = Path(__file__).resolve().parents[3] / "docs" / "schemas"


def test_committed_json_schemas_match_the_models():
    rendered = render_schemas()
    committed = {p.name: p.read_text() for p in SCHEMAS.glob("*.schema.json")}
    assert set(committed) == set(rendered), "run `make schemas` and commit docs/schemas"
    for name, text in rendered.items():
        assert committed[name] == text, f"{name} drifted from its model; run `make schemas`"


def _run(**overrides) -> RunManifest:
    env = current_environment()
    return RunManifest(run_id="2025-10-28_141200-abc123", run_type="train", code_version="test",
                       environment=env, hostname=env.hostname, **overrides)


def test_run_manifest_has_the_spec_fields():
    data = json.loads(dump_manifest(_run()))
    for field in ["run_id", "run_type", "dataset_id", "dataset_hash", "teacher_model", "student_model", "gpu_type",
                  "provider", "hostname", "wandb_run_id", "tokens_trained", "cost_estimate_usd_total",
                  "checkpoint_dir_durable", "best_checkpoint", "eval_status", "eval_report", "eval_summary",
                  "status", "started_at", "ended_at", "seed", "config", "config_hash", "code_version", "environment",
                  "inputs", "outputs", "cost", "judge_model_id", "judge_prompt_hash", "schema_version"]:
        assert field in data


def test_invalid_manifest_lists_every_bad_field_and_the_file():
    bad = json.loads(dump_manifest(_run()))
    bad["tokens_trained"] = "many"
    bad["status"] = "exploded"
    with pytest.raises(ManifestValidationError) as info:
        load_manifest(RunManifest, json.dumps(bad), "runs/manifests/x.json")
    message = str(info.value)
    assert "runs/manifests/x.json" in message and "tokens_trained" in message and "status" in message


def test_newer_schema_version_is_refused():
    data = json.loads(dump_manifest(_run()))
    data["schema_version"] = 99
    with pytest.raises(ManifestValidationError, match="newer"):
        load_manifest(RunManifest, json.dumps(data), "m.json")


def test_dataset_manifest_round_trips():
    manifest = DatasetManifest(id="d", version=2, row_schema="qa", rows=3, content_hash="ab" * 32, path="p", parents=["d@v1"])
    again = load_manifest(DatasetManifest, dump_manifest(manifest), "m.json")
    assert again == manifest and again.ref == "d@v2"

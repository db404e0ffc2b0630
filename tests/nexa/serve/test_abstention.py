"""`nexa serve` reports the bundle's uncertainty gate per choice (confidence, abstained, escalated); `nexa bundle
calibrate-gate` fits that gate and `nexa serve --fallback-url` escalates what it abstains on."""

from __future__ import annotations

import json
import shutil

import pytest
from fastapi.testclient import TestClient
from local_openai import echoing_completions
from serve_token import TOKEN
from typer.testing import CliRunner

from nexa.bundle.build import write_manifest
from nexa.cli import app
from nexa.models.gate import gate_manifest_entry
from nexa.serve.app import create_app
from nexus import BundleError, NexusModel

PROMPTS = [f"max({a},{b})=" for a in range(6) for b in range(0, 40, 7)] + [f"{v} km in m?" for v in range(1, 13)]


def _complete(bundle, prompt: str, fallback_url: str | None = None) -> dict:
    with TestClient(create_app(bundle, token=TOKEN, fallback_url=fallback_url)) as client:
        response = client.post("/v1/completions", json={"model": "tiny", "prompt": prompt, "max_tokens": 4},
                               headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    return response.json()["choices"][0]


def test_a_gated_bundle_answers_with_its_abstention_fields(bundle, tmp_path):
    assert "abstained" not in _complete(bundle, "max(3,9)=")  # no gate: the OpenAI shape is unchanged
    gated = shutil.copytree(bundle, tmp_path / "tiny")
    write_manifest(gated, uncertainty_gate=gate_manifest_entry(1.0, 2.0, 0.1, 0.1))  # abstains on everything
    choice = _complete(gated, "max(3,9)=")
    assert choice["abstained"] is True and choice["escalated"] is False and 0 < choice["confidence"] <= 1


def _calibrate(bundle, rows: list[dict], tmp_path, *extra: str) -> dict:
    file = tmp_path / "calibration.jsonl"
    file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = CliRunner().invoke(app, ["bundle", "calibrate-gate", str(bundle), "--rows", str(file), "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_calibrate_gate_certifies_a_threshold_only_when_answers_are_right(bundle, tmp_path):
    own = NexusModel.load(bundle).complete_batch(PROMPTS, max_new_tokens=6)
    right = shutil.copytree(bundle, tmp_path / "right")
    fitted = _calibrate(right, [{"prompt": p, "answer": g.text} for p, g in zip(PROMPTS, own)], tmp_path)
    assert fitted["calibration_accuracy"] == 1.0 and fitted["threshold"] is not None
    assert fitted["calibration_coverage"] == 1.0 and fitted["calibration_error_answered"] == 0.0
    gate = NexusModel.load(right).gate  # written into the manifest, hashes still valid
    assert gate is not None and gate.threshold == fitted["threshold"] and gate.temperature == fitted["temperature"]
    wrong = shutil.copytree(bundle, tmp_path / "wrong")
    refused = _calibrate(wrong, [{"prompt": p, "answer": g.text + "0"} for p, g in zip(PROMPTS, own)], tmp_path)
    assert refused["calibration_accuracy"] == 0.0 and refused["threshold"] is None and refused["calibration_coverage"] == 0.0


def test_calibrate_gate_refuses_bad_rows_in_one_line(bundle, tmp_path):
    file = tmp_path / "bad.jsonl"
    file.write_text('{"prompt": "max(1,2)="}\n')
    result = CliRunner().invoke(app, ["bundle", "calibrate-gate", str(bundle), "--rows", str(file)])
    assert result.exit_code == 2 and "answer" in result.output
    assert "uncertainty_gate" not in json.loads((bundle / "manifest.json").read_text())


def test_serve_escalates_abstentions_to_the_fallback_url(bundle, tmp_path):
    with pytest.raises(BundleError, match="no uncertainty gate"):
        create_app(bundle, token=TOKEN, fallback_url="http://127.0.0.1:9/v1/completions")
    gated = shutil.copytree(bundle, tmp_path / "tiny")
    write_manifest(gated, uncertainty_gate=gate_manifest_entry(1.0, 2.0, 0.1, 0.1))  # abstains on everything
    with echoing_completions() as fallback_url:
        choice = _complete(gated, "max(3,9)=", fallback_url)
    assert choice["text"] == "fallback:max(3,9)=" and choice["abstained"] is True and choice["escalated"] is True

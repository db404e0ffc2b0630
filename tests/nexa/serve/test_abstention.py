"""`nexa serve` reports the bundle's uncertainty gate per choice: confidence, abstained, escalated."""

from __future__ import annotations

import shutil

from fastapi.testclient import TestClient
from serve_token import TOKEN

from nexa.bundle.build import write_manifest
from nexa.models.gate import gate_manifest_entry
from nexa.serve.app import create_app


def _complete(bundle, prompt: str) -> dict:
    with TestClient(create_app(bundle, token=TOKEN)) as client:
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

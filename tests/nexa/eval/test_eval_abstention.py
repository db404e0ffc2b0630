"""`nexa eval` on a bundle with an uncertainty gate reports coverage, error among answered and the risk–coverage
curve per capability (from nexa.models.gate), scoring every prompt as the student answered it; an ungated model
reports no abstention block."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from test_eval_bundle import _bundle
from typer.testing import CliRunner

from nexa.bundle.build import write_manifest
from nexa.cli import app
from nexa.eval.evaluate import read_jsonl
from nexa.models.gate import gate_manifest_entry, risk_coverage, selective_error
from nexus import NexusModel

DEAD_FALLBACK = "http://127.0.0.1:9/v1/completions"  # nothing listens: an escalation would fail the eval


def _eval(model: Path, lab) -> dict:
    args = ["eval", "run", "--model", str(model), "--tasks", "reasoning", "--n", "12", "--max-new-tokens", "4",
            "--lab", str(lab.root), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def _output(summary: dict, name: str) -> Path:
    return Path(next(o["path"] for o in summary["outputs"] if o["path"].endswith(name)))


def test_a_gated_bundle_s_eval_reports_its_abstention(tiny_model, tmp_path, lab):
    plain = _bundle(tiny_model, tmp_path)
    ungated = _eval(plain, lab)
    assert "abstention" not in ungated and "abstention" not in json.loads(_output(ungated, "eval_report.json").read_text())
    prompts = [i["prompt"] for i in read_jsonl(_output(ungated, "generations.jsonl"))]

    gated = shutil.copytree(plain, tmp_path / "gated")
    write_manifest(gated, uncertainty_gate=gate_manifest_entry(1.0, 0.0, 0.2, 0.1))  # answers everything
    confidences = sorted(g.confidence for g in NexusModel.load(gated).complete_batch(prompts, max_new_tokens=4))
    threshold = confidences[len(confidences) // 2]  # about half the prompts abstain
    write_manifest(gated, uncertainty_gate=gate_manifest_entry(1.0, threshold, 0.2, 0.1, fallback_url=DEAD_FALLBACK))
    summary = _eval(gated, lab)

    scored = read_jsonl(_output(summary, "scores.jsonl"))
    assert [s["output"] for s in scored] == [s["output"] for s in read_jsonl(_output(ungated, "scores.jsonl"))]
    assert all(s["abstained"] == (s["confidence"] < threshold) for s in scored) and any(s["abstained"] for s in scored)
    assert sorted(s["confidence"] for s in scored) == confidences  # the runtime's own confidences
    conf, correct = [s["confidence"] for s in scored], [s["score"] == 1.0 for s in scored]
    error, coverage = selective_error(conf, correct, threshold)
    block = summary["abstention"]["gated"]["reasoning"]
    assert 0 < block["coverage"] < 1 and block["coverage"] == coverage and block["error_answered"] == error
    assert block["alpha"] == 0.2 and block["n"] == 12 and block["risk_coverage"] == risk_coverage(conf, correct)
    assert json.loads(_output(summary, "eval_report.json").read_text())["abstention"] == summary["abstention"]
    assert summary["scores"]["gated"] == ungated["scores"]["bundle"]  # accuracy over all items, as answered

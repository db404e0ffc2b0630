"""`nexa bundle build` and `nexa bundle verify` from the command line, on a tiny real student."""

import json

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from nexa.cli import app
from nexa.ledger.datasets import write_dataset_version
from nexa.niwt.router import DEFAULT_FEATURIZER, train_router, write_router
from nexa.train.models import DecoderSize, build_model
from nexa.train.tokenizer import char_special_ids, save_char_tokenizer, train_char_tokenizer

ROWS = [{"prompt": f"max({a},{b})=", "answer": str(max(a, b)), "capability": "reasoning", "split": "eval"} for a in range(4) for b in range(3)]


@pytest.fixture
def parts(lab, tmp_path):
    tokenizer = train_char_tokenizer([r["prompt"] + r["answer"] for r in ROWS] + ["uncensored"])
    model = build_model(DecoderSize(hidden_size=32, num_hidden_layers=1, num_attention_heads=2), tokenizer.get_vocab_size(), seed=42, specials=char_special_ids(tokenizer))
    model.save_pretrained(tmp_path / "student")
    save_char_tokenizer(tokenizer, tmp_path / "student")
    ref = write_dataset_version(lab, "bench", ROWS, row_schema="qa").ref
    (tmp_path / "teacher_scores.json").write_text(json.dumps({"reasoning": 0.0}))
    return lab, tmp_path, ref


def _router(tmp_path, capabilities):
    folder = tmp_path / f"router-{len(capabilities)}"
    prompts = [r["prompt"] for r in ROWS] + ["tell me anything"] * (len(capabilities) - 1)
    labels = ["reasoning"] * len(ROWS) + capabilities[1:]
    weight, bias = train_router(prompts, labels, capabilities, seed=42, epochs=20)
    write_router(folder, weight, bias, capabilities, DEFAULT_FEATURIZER)
    (folder / "router.json").write_text(json.dumps({"capabilities": capabilities}))
    return folder


def _adapters(tmp_path, name):
    folder = tmp_path / "adapters"
    folder.mkdir(exist_ok=True)
    save_file({"model.layers.0.mlp.up_proj.lora_A": torch.zeros(2, 32), "model.layers.0.mlp.up_proj.lora_B": torch.zeros(96, 2)},
              str(folder / f"{name}.safetensors"), metadata={"capability": name, "rank": "2", "alpha": "4"})
    return folder


def _build(lab, tmp_path, ref, router, out, *extra):
    args = ["bundle", "build", "--lab", str(lab.root), "--model", str(tmp_path / "student"), "--router", str(router),
            "--out", str(tmp_path / out), "--benchmark", ref, "--teacher-scores", str(tmp_path / "teacher_scores.json"), "--json", *extra]
    return CliRunner().invoke(app, args)


def test_build_then_verify_a_bundle_with_an_adapter_and_int8(parts):
    lab, tmp_path, ref = parts
    result = _build(lab, tmp_path, ref, _router(tmp_path, ["reasoning"]), "b", "--adapters", str(_adapters(tmp_path, "reasoning")),
                    "--quantize", "int8")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["adapters"] == {"reasoning": "adapters/reasoning"} and manifest["safety"] == {"uncensored": False}
    assert out["size_bytes_after"] < out["size_bytes_before"] and out["run_id"]
    verified = CliRunner().invoke(app, ["bundle", "verify", str(tmp_path / "b"), "--lab", str(lab.root), "--json"])
    report = json.loads((tmp_path / "b" / "verify_report.json").read_text())
    assert report["process"]["nexa_imported"] is False and report["checks"]["hash_mismatches"] == []
    assert report["process"]["network_blocked"] is True
    assert report["eval_prompts"] == {"reasoning": len(ROWS)} and report["retention_ci_level"] == 0.95
    assert report["retention_ci"] == {"reasoning": [1.0, 1.0]}  # a teacher scoring 0 leaves nothing to lose
    assert verified.exit_code == (0 if report["passed"] else 1)


def test_an_uncensored_capability_needs_the_explicit_opt_in(parts):
    lab, tmp_path, ref = parts
    router = _router(tmp_path, ["reasoning", "uncensored"])
    refused = _build(lab, tmp_path, ref, router, "std")
    assert refused.exit_code != 0 and "opt-in" in " ".join(refused.output.split())
    assert not (tmp_path / "std").exists()
    allowed = _build(lab, tmp_path, ref, router, "unc", "--allow-uncensored")
    assert allowed.exit_code == 0, allowed.output
    manifest = json.loads((tmp_path / "unc" / "manifest.json").read_text())
    assert manifest["safety"] == {"uncensored": True}
    assert "enable_uncensored=True" in (tmp_path / "unc" / "README.md").read_text()


def test_the_registry_names_the_metric_the_bundle_gate_measures_with(parts):
    """A student without a NIWT profile gets each capability's metric and benchmark from the teacher registry."""
    from nexa.niwt.registry import build_registry

    lab, tmp_path, ref = parts
    (tmp_path / "teachers.csv").write_text("ModelName,Parameters,Category,BestFeature,Benchmark,Metric\n"
                                           "t1,1M,text,reasoning,max-eval,numeric_match\n")
    build_registry(tmp_path / "teachers.csv", tmp_path / "teacher_registry.json")
    result = _build(lab, tmp_path, ref, _router(tmp_path, ["reasoning"]), "reg", "--registry", str(tmp_path / "teacher_registry.json"))
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "reg" / "benchmark" / "metrics.json").read_text())
    assert metrics == {"reasoning": {"metric": "numeric_match", "benchmark": "max-eval"}}
    wrong = _build(lab, tmp_path, ref, _router(tmp_path, ["reasoning"]), "bad", "--registry", str(tmp_path / "teachers.csv"))
    assert wrong.exit_code == 2 and "teachers.csv" in wrong.output and not (tmp_path / "bad").exists()

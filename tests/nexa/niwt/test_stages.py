"""The NIWT stages in a tiny real pipeline: registry -> profile -> synthesize -> student_niwt (gate failure path)."""

import json

import pytest
import yaml
from safetensors import safe_open

from nexa.pipeline.runner import StageFailedError, run_pipeline
from nexa.pipeline.spec import load_pipeline

TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
STAGES = [
    {"name": "data", "uses": "nexa.data.stages:capability_datasets",
     "with": {"capabilities": {"reasoning": {"train": 120}, "science": {"train": 120}}, "eval_rows": 20, "hypotheses": 0}},
    {"name": "tokenizer", "uses": "nexa.train.stages:tokenizer", "needs": ["data"]},
    {"name": "teacher", "uses": "nexa.train.stages:teacher", "needs": ["data", "tokenizer"],
     "with": {"size": TINY, "optim": {"max_steps": 10, "batch_size": 16, "learning_rate": 0.003, "warmup_steps": 3}}},
    {"name": "distill", "uses": "nexa.teachers.stages:materialize_local", "needs": ["teacher", "data"]},
    {"name": "teacher_registry", "uses": "nexa.niwt.stages:teacher_registry",
     "with": {"teachers": [{"ModelName": "tiny", "Parameters": "0.1M", "Category": "text", "BestFeature": "reasoning;science",
                                  "RetainFraction": "1.0"}]}},
    {"name": "router", "uses": "nexa.niwt.stages:router", "needs": ["data"], "with": {"epochs": 30}},
    {"name": "profile", "uses": "nexa.niwt.stages:profile", "needs": ["teacher", "distill", "data", "teacher_registry"],
     "with": {"teacher_name": "tiny", "config": {"samples": 40, "pilot_samples": 16, "key_layers": 2, "components": 8,
                                                 "residual_components": 32, "batch_size": 20}}},
    {"name": "synthesize", "uses": "nexa.niwt.stages:synthesize", "needs": ["teacher", "profile"],
     "with": {"arch": {"backbone": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 1, "intermediate_size": 64},
                       "max_param_ratio": 0.4}}},
    {"name": "student_niwt", "uses": "nexa.niwt.stages:student_niwt", "needs": ["profile", "synthesize", "distill", "data", "router"],
     "with": {"config": {"phase1_steps": 2, "phase2_steps": 0, "check_every": 3, "batch_size": 8, "anchor_batch": 4},
              "max_attempts": 2, "retry_steps": 2}},
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from nexa.ledger import Lab

    root = tmp_path_factory.mktemp("niwt")
    lab = Lab.init(root / "lab")
    path = root / "niwt.yaml"
    path.write_text(yaml.safe_dump({"schema_version": 1, "name": "niwt-tiny", "seed": 42, "stages": STAGES}))
    try:  # a 10-step teacher may score 0, which any student keeps; a gate failure is the other legal outcome
        run_pipeline(lab, load_pipeline(path))
        failure = None
    except StageFailedError as error:
        failure = error
    return lab, failure, root


def _stage_dir(lab, name):
    folders = sorted((lab.root / ".nexa" / "durable" / "stages" / name).iterdir())
    assert len(folders) == 1
    return folders[0]


def _scratch(lab, name):
    found = sorted((lab.root / ".nexa" / "scratch" / "work").glob(f"{name}-*"))
    assert found, name
    return found[-1]


def test_registry_profile_and_synthesis_outputs(tiny_run):
    lab, _, _ = tiny_run
    registry = json.loads((_stage_dir(lab, "teacher_registry") / "teacher_registry.json").read_text())
    assert registry["teachers"][0]["capabilities"][0]["retain_fraction"] == 1.0  # the RetainFraction column wins
    profile = _stage_dir(lab, "profile")
    summary = json.loads((profile / "summary.json").read_text())
    assert set(summary["teacher_scores"]) == {"reasoning", "science"} and summary["fraction_of_raw"] < 1.0
    for capability in ("reasoning", "science"):
        folder = profile / "profiles" / "tiny" / capability
        assert (folder / "profile.safetensors").is_file() and (folder / "raw_outputs.jsonl").is_file()
    plan = json.loads((_stage_dir(lab, "synthesize") / "synthesis.json").read_text())
    assert set(plan["adapters"]) == {"reasoning", "science"}
    assert all(2 <= a["rank"] <= 16 for a in plan["adapters"].values())
    assert len(plan["transfer"]["layers"]) == 1


def test_gate_attempts_are_bounded_recorded_and_retrain_only_failing_adapters(tiny_run):
    lab, failure, _ = tiny_run
    folder = _scratch(lab, "student_niwt") if failure else _stage_dir(lab, "student_niwt")
    attempts = json.loads((folder / "gate_report.json").read_text())["attempts"]
    assert 1 <= len(attempts) <= 2 and attempts[0]["retrained"] == []
    if failure is not None:
        assert failure.stage == "student_niwt" and "NIWT gate failed" in str(failure)
        assert [a["attempt"] for a in attempts] == [1, 2] and attempts[1]["retrained"] == attempts[0]["failing"]
    else:
        assert attempts[-1]["passed"] and (folder / "model" / "manifest.json").is_file()
    adapters = folder / "adapters"
    assert all(a["teacher_loaded"] is False for a in attempts)
    with safe_open(str(adapters / "reasoning.safetensors"), "pt") as handle:
        meta = handle.metadata()
        assert meta["capability"] == "reasoning" and int(meta["rank"]) >= 2
        assert all(k.endswith((".lora_A", ".lora_B")) for k in handle.keys())

"""Training configs: every shipped preset validates; bad configs fail with every problem named."""

from __future__ import annotations

from pathlib import Path

import pytest

from nexa.ledger import ManifestValidationError
from nexa.train.config import load_train_config, validate_train_config

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
SHIPPED = sorted(p for p in CONFIGS.glob("*.yaml") if p.name != "autotuned.yaml")


def test_configs_are_shipped():
    names = {p.stem for p in SHIPPED}
    assert {"sft_tiny", "lora_tiny", "kd_logit", "kd_sequence", "kd_offline", "fsdp"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    config = load_train_config(path)
    assert config.resolved()["schema_version"] == 1
    assert config.data.tokenizer is None or config.data.tokenizer.is_absolute()


def test_autotuned_config_loads_when_present():
    path = CONFIGS / "autotuned.yaml"
    if not path.exists():
        pytest.skip("no sweep has written configs/autotuned.yaml in this checkout")
    assert load_train_config(path).name.endswith("autotuned")


def _base(**changes):
    raw = {"model": {"size": {"hidden_size": 32}}, "data": {"train": ["x@v1"], "tokenizer": "/t.json"}}
    raw.update(changes)
    return raw


def test_method_combinations_parse():
    assert validate_train_config(_base(method="kd+lora", kd={"mode": "sequence"}), "c").method == ["kd", "lora"]
    lora_only = validate_train_config(_base(method="lora"), "c")
    assert lora_only.method == ["sft", "lora"] and lora_only.lora.r == 8


def test_logit_kd_needs_a_teacher():
    with pytest.raises(ManifestValidationError, match="kd.teacher"):
        validate_train_config(_base(method="kd"), "c.yaml")


def test_every_problem_is_listed_at_once():
    raw = _base(method="sft+bogus", precision="fp8", optim={"max_steps": 0})
    with pytest.raises(ManifestValidationError) as info:
        validate_train_config(raw, "bad.yaml")
    text = str(info.value)
    assert "bad.yaml" in text and "method" in text and "precision" in text and "optim.max_steps" in text


def test_model_source_must_be_exactly_one():
    with pytest.raises(ManifestValidationError, match="exactly one"):
        validate_train_config(_base(model={"size": {}, "pretrained": "/m"}), "c")


def test_data_needs_datasets_or_a_pack():
    with pytest.raises(ManifestValidationError, match="either"):
        validate_train_config(_base(data={"tokenizer": "/t.json"}), "c")


def test_resolved_config_hash_is_stable():
    from nexa.ledger.hashing import sha256_json

    a, b = validate_train_config(_base(), "a"), validate_train_config(_base(optim={}), "b")
    assert sha256_json(a.resolved()) == sha256_json(b.resolved())
    assert a.resolved()["optim"]["learning_rate"] == 0.002


def test_a_pipeline_training_stage_is_validated_as_a_train_config(tmp_path):
    from nexa.ledger.errors import ManifestValidationError
    from nexa.train.config import TrainConfig, stage_train_config

    config = stage_train_config("student_kd", 42, {"hidden_size": 32, "num_hidden_layers": 2}, {"max_steps": 5}, 64,
                                ["golden-distill@v1"], tmp_path / "tokenizer.json", kd={"alpha": 0.7}, teacher=tmp_path / "t")
    assert isinstance(config, TrainConfig) and config.kd_mode == "logit" and config.kd.alpha == 0.7
    assert config.model.size.hidden_size == 32 and config.optim.max_steps == 5 and config.data.seq_len == 64
    with pytest.raises(ManifestValidationError, match=r"(?s)baseline.*optim.max_stepz"):
        stage_train_config("baseline", 42, {"hidden_size": 32}, {"max_stepz": 5}, 64, ["d@v1"], tmp_path / "tokenizer.json")

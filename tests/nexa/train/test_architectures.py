"""`model.architecture`: a builder registered in nexa.models.ARCHITECTURES trains like any other model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_fixtures import write_config
from transformers import LlamaConfig, LlamaForCausalLM

import nexa.models
from nexa.train.config import load_train_config
from nexa.train.engine import train


def narrow_llama(vocab_size: int, width: int = 24) -> LlamaForCausalLM:
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, hidden_size=width, intermediate_size=2 * width,
                                        num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=64))


def test_a_registered_architecture_is_built_with_its_params_and_trains(lab, monkeypatch):
    monkeypatch.setattr(nexa.models, "ARCHITECTURES", {"narrow-llama": narrow_llama}, raising=False)
    config = load_train_config(write_config(lab, "arch", model={"architecture": "narrow-llama",
                                                                "architecture_params": {"width": 16}},
                                            optim={"max_steps": 6, "batch_size": 8, "learning_rate": 0.01,
                                                   "warmup_steps": 1, "logging_steps": 2}))
    outcome = train(lab, config)
    assert outcome.stats["steps"] == 6 and len(outcome.stats["loss_curve"]) == 3
    saved = json.loads((Path(outcome.model.path) / "config.json").read_text())
    assert saved["hidden_size"] == 16 and saved["num_hidden_layers"] == 1  # the builder's params reached it
    from nexa.ledger.runs import load_run

    assert load_run(lab, outcome.run_id).student_model == "nexa.models:narrow-llama"


def test_an_unknown_architecture_names_the_known_ones(lab, monkeypatch):
    monkeypatch.setattr(nexa.models, "ARCHITECTURES", {"narrow-llama": narrow_llama}, raising=False)
    config = load_train_config(write_config(lab, "arch2", model={"architecture": "mamba"}))
    with pytest.raises(ValueError, match=r"'mamba' is not registered; known: \['narrow-llama'\]"):
        train(lab, config)

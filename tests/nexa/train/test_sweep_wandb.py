"""The W&B sweep backend, as far as it runs without a W&B server: the space in W&B's words (read back by
W&B's own sweep-config reader), a real trial on an offline W&B run, and clear refusals offline."""

from __future__ import annotations

import json

import optuna
import pytest
import yaml
from train_fixtures import write_config
from typer.testing import CliRunner
from wandb.sdk.sweeps.scheduler.optuna import search_space_from_sweep_config

from nexa.cli import app
from nexa.ledger.runs import list_runs, load_run
from nexa.train.config import load_train_config
from nexa.train.sweep import Param, SearchSpace, SweepError, final_loss
from nexa.train.sweep_wandb import params_from_wandb_config, run_wandb_trial, wandb_sweep_config

SPACE = SearchSpace(params={
    "optim.learning_rate": Param(type="float", low=1e-4, high=1e-2, log=True),
    "optim.warmup_steps": Param(type="int", low=0, high=6),
    "optim.batch_size": Param(type="categorical", choices=[4, 8]),
    "optim.weight_decay": Param(type="float", low=0.0, high=0.1, step=0.05),
    "optim.gradient_accumulation_steps": Param(type="int", low=1, high=8, log=True),
    "seed": Param(type="int", low=0, high=100, step=10),
})
OPTIM = {"max_steps": 9, "batch_size": 8, "learning_rate": 0.003, "warmup_steps": 1, "logging_steps": 3}


def _optuna_distribution(param: Param, name: str):
    """What Optuna samples for this Param (a fixed trial records the distribution it was asked for)."""
    study = optuna.create_study()
    trial = study.ask()
    param.suggest(trial, name)
    return trial.distributions[name]


def test_every_field_reaches_wandb_as_the_distribution_optuna_samples():
    config = wandb_sweep_config(SPACE, method="bayes", name="tiny")
    assert config["metric"] == {"name": "loss", "goal": "minimize"} and config["method"] == "bayes"
    optim = config["parameters"]["optim"]["parameters"]  # dotted fields are W&B nested parameters
    read_by_wandb = {**{f"optim.{k}": v for k, v in search_space_from_sweep_config(optim).items()},
                     **search_space_from_sweep_config({"seed": config["parameters"]["seed"]})}
    for name, param in SPACE.params.items():
        assert read_by_wandb[name] == _optuna_distribution(param, name), name


@pytest.mark.parametrize("param, method, message", [
    (Param(type="float", low=0.0, high=1.0), "grid", "grid sweep needs `choices`"),
    (Param(type="int", low=0, high=10, log=True), "bayes", "low >= 1"),
    (Param(type="float", low=0.1, high=1.0), "hyperband", "not one of"),
])
def test_spaces_wandb_cannot_sample_are_refused_by_name(param, method, message):
    with pytest.raises(SweepError, match=message):
        wandb_sweep_config(SearchSpace(params={"optim.learning_rate": param}), method=method, name="x")


def test_values_coming_back_from_wandb_are_typed_and_checked():
    nested = {"optim": {"learning_rate": 0.001, "warmup_steps": 3.0, "batch_size": 8, "weight_decay": 0.05,
                        "gradient_accumulation_steps": 2}, "seed": 40.0}
    params = params_from_wandb_config(SPACE, nested, "run abc")
    assert params["optim.warmup_steps"] == 3 and isinstance(params["optim.warmup_steps"], int)
    assert params["seed"] == 40 and params["optim.batch_size"] == 8
    with pytest.raises(SweepError, match="outside the space's range"):
        params_from_wandb_config(SPACE, {**nested, "seed": 500}, "run abc")
    with pytest.raises(SweepError, match="not one of the space's choices"):
        params_from_wandb_config(SPACE, {**nested, "optim": {**nested["optim"], "batch_size": 3}}, "run abc")
    with pytest.raises(SweepError, match="no value for optim.learning_rate"):
        params_from_wandb_config(SPACE, {"optim": {}, "seed": 1}, "run abc")


def test_a_trial_trains_on_the_wandb_runs_parameters_and_reports_its_loss(lab, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    base = load_train_config(write_config(lab, "wbtrial", optim=OPTIM)).resolved()
    space = SearchSpace(params={"optim.learning_rate": Param(type="float", low=1e-4, high=1e-2, log=True),
                                "optim.batch_size": Param(type="categorical", choices=[4, 8])})
    sampled = {"optim": {"learning_rate": 0.0025, "batch_size": 4}}
    with wandb.init(mode="offline", dir=str(tmp_path), project="nexa-test", config=sampled) as wandb_run:
        record = run_wandb_trial(lab, base, space, wandb_run, parent_run_id="sweep-parent")
        summary_loss = wandb_run.summary["loss"]
        run_dir = wandb_run.dir
    trial = load_run(lab, record["run_id"])
    assert trial.run_type == "sweep_trial" and trial.parent_run_id == "sweep-parent" and trial.status == "succeeded"
    assert trial.wandb_run_id == record["wandb_run_id"] == wandb_run.id
    assert trial.config["optim"]["learning_rate"] == 0.0025 and trial.config["optim"]["batch_size"] == 4
    assert trial.config["optim"]["max_steps"] == 9  # the rest comes from the base config
    assert record["params"] == {"optim.learning_rate": 0.0025, "optim.batch_size": 4}
    assert summary_loss == pytest.approx(record["value"]) == final_loss(trial_loss_curve(lab, trial.run_id))
    assert any((tmp_path / "wandb").glob("offline-run-*/run-*.wandb")), f"no offline W&B run file (run dir {run_dir})"


def trial_loss_curve(lab, run_id: str) -> list:
    return json.loads((lab.scratch / "runs" / run_id / "result.json").read_text())["stats"]["loss_curve"]


def test_wandb_backend_offline_says_how_to_go_online_or_use_optuna(lab, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    space = lab.root / "space.yaml"
    space.write_text(yaml.safe_dump({"params": {"optim.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2}}}))
    result = CliRunner().invoke(app, ["sweep", "launch", "--backend", "wandb", "--config", str(write_config(lab, optim=OPTIM)),
                                      "--space", str(space), "--trials", "2", "--lab", str(lab.root)])
    assert result.exit_code == 2
    assert "WANDB_MODE=offline" in result.output and "--backend optuna" in result.output
    assert not [r for r in list_runs(lab) if r.run_type in ("sweep", "sweep_trial")]


def test_unreachable_wandb_server_is_a_clear_error_not_a_hang(lab, monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    space = lab.root / "space.yaml"
    space.write_text(yaml.safe_dump({"params": {"optim.batch_size": {"type": "categorical", "choices": [4, 8]}}}))
    result = CliRunner().invoke(app, ["sweep", "launch", "--backend", "wandb", "--config", str(write_config(lab, optim=OPTIM)),
                                      "--space", str(space), "--trials", "1", "--lab", str(lab.root)])
    assert result.exit_code == 2, result.output
    assert "W&B could not create the sweep (server http://127.0.0.1:9)" in " ".join(result.output.split())
    assert not [r for r in list_runs(lab) if r.run_type in ("sweep", "sweep_trial")]


def test_the_shipped_search_space_fits_the_shipped_config_for_both_backends():
    from pathlib import Path

    from nexa.train.sweep import load_sweep

    root = Path(__file__).resolve().parents[3] / "configs"
    _, space, _ = load_sweep(root / "sft_tiny.yaml", root / "spaces" / "sft_tiny.yaml")  # raises if a field does not fit
    parameters = wandb_sweep_config(space, method="bayes", name="sft-tiny")["parameters"]["optim"]["parameters"]
    assert set(parameters) == {"learning_rate", "warmup_steps", "weight_decay", "batch_size"}

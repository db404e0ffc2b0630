"""Sweeps: a 3-trial Optuna study on a tiny model, then `nexa sweep analyze` writes a loadable autotuned config."""

from __future__ import annotations

import json

import yaml
from train_fixtures import write_config
from typer.testing import CliRunner

from nexa.cli import app
from nexa.ledger.runs import list_runs
from nexa.train.config import load_train_config

OPTIM = {"max_steps": 12, "batch_size": 8, "learning_rate": 0.003, "warmup_steps": 1, "logging_steps": 3}


def test_three_trial_sweep_writes_autotuned_yaml(lab):
    config = write_config(lab, "sweepme", optim=OPTIM)
    space = lab.root / "space.yaml"
    space.write_text(yaml.safe_dump({"params": {"optim.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                                                "optim.batch_size": {"type": "categorical", "choices": [4, 8]}}}))
    runner = CliRunner()
    launched = runner.invoke(app, ["sweep", "launch", "--config", str(config), "--space", str(space), "--trials", "3",
                                   "--lab", str(lab.root), "--json"])
    assert launched.exit_code == 0, launched.output
    result = json.loads(launched.stdout.strip().splitlines()[-1])
    assert len(result["trials"]) == 3 and result["storage"].startswith("sqlite:///")
    finished = [t for t in result["trials"] if t["state"] in ("COMPLETE", "PRUNED")]
    assert len(finished) == 3 and result["best_value"] == min(t["value"] for t in result["trials"] if t["state"] == "COMPLETE")
    trial_runs = [r for r in list_runs(lab) if r.run_type == "sweep_trial"]
    assert len(trial_runs) == 3 and {r.parent_run_id for r in trial_runs} == {result["run_id"]}

    out = lab.root / "configs" / "autotuned.yaml"
    analyzed = runner.invoke(app, ["sweep", "analyze", "--study", "sweepme", "--out", str(out), "--lab", str(lab.root), "--json"])
    assert analyzed.exit_code == 0, analyzed.output
    best = json.loads(analyzed.stdout.strip().splitlines()[-1])
    tuned = load_train_config(out)
    assert tuned.name == "sweepme-autotuned"
    assert tuned.optim.learning_rate == best["best_params"]["optim.learning_rate"]
    assert tuned.optim.batch_size == best["best_params"]["optim.batch_size"]
    assert tuned.optim.max_steps == 12  # everything not searched comes from the base config


def test_space_naming_an_unknown_field_fails_before_any_trial(lab):
    space = lab.root / "space.yaml"
    space.write_text(yaml.safe_dump({"params": {"optim.lr": {"type": "float", "low": 0.001, "high": 0.01}}}))
    result = CliRunner().invoke(app, ["sweep", "launch", "--config", str(write_config(lab, optim=OPTIM)), "--space", str(space),
                                      "--trials", "2", "--lab", str(lab.root)])
    assert result.exit_code == 2 and "optim.lr" in result.output
    assert not [r for r in list_runs(lab) if r.run_type == "sweep_trial"]


def test_analyze_unknown_study_lists_the_known_ones(lab):
    result = CliRunner().invoke(app, ["sweep", "analyze", "--study", "nope", "--lab", str(lab.root)])
    assert result.exit_code == 2 and "nope" in result.output

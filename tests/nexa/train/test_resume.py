"""Deterministic resume: a CPU run killed with SIGKILL mid-way and resumed ends with the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from train_fixtures import write_config
from safetensors.torch import load_file

from nexa.ledger.runs import load_run
from nexa.train.config import load_train_config
from nexa.train.engine import checkpoint_store, latest_checkpoint, train

SRC = Path(__file__).resolve().parents[3] / "src"
OPTIM = {"max_steps": 100, "batch_size": 8, "learning_rate": 0.003, "warmup_steps": 5, "logging_steps": 5, "save_steps": 10}


def _weights(lab, run_id: str) -> dict:
    return load_file(str(lab.durable().local_path(f"models/{run_id}/model.safetensors")))


def test_sigkill_then_resume_matches_an_uninterrupted_run(lab):
    config_path = write_config(lab, "resume", optim=OPTIM)
    config = load_train_config(config_path)
    reference = train(lab, config)

    env = {**os.environ, "PYTHONPATH": str(SRC), "NEXA_RUN_ID": "2026-01-01_000000-killed", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "nexa.cli", "train", "--config", str(config_path), "--lab", str(lab.root)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    store, prefix = checkpoint_store(lab, lab.checkpoint_dirs("2026-01-01_000000-killed")[1])
    deadline = time.monotonic() + 60
    while latest_checkpoint(store, prefix) is None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    killed_at = latest_checkpoint(store, prefix)
    assert killed_at is not None and int(killed_at.split("-")[1]) < OPTIM["max_steps"]
    assert load_run(lab, "2026-01-01_000000-killed").status == "running"
    assert not lab.durable().exists("models/2026-01-01_000000-killed/_files.json")

    resumed = train(lab, config, resume=True)
    assert resumed.run_id == "2026-01-01_000000-killed" and resumed.resumed_from == killed_at
    assert resumed.stats["steps"] == OPTIM["max_steps"]
    assert load_run(lab, resumed.run_id).status == "succeeded"
    a, b = _weights(lab, reference.run_id), _weights(lab, resumed.run_id)
    assert a.keys() == b.keys()
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert diff <= 1e-6, f"max-abs-diff {diff}"
    metrics = json.loads(lab.durable().get_bytes(f"models/{resumed.run_id}-metrics.json"))
    assert metrics["steps"] == OPTIM["max_steps"]


def test_checkpoints_follow_the_spec_environment_variables(lab, tmp_path, monkeypatch):
    monkeypatch.setenv("NEXA_CHECKPOINT_DIR", str(tmp_path / "scratch-ckpt"))
    monkeypatch.setenv("NEXA_DURABLE_CHECKPOINT_DIR", str(tmp_path / "bucket"))
    config = load_train_config(write_config(lab, "envckpt", optim={**OPTIM, "max_steps": 20}))
    outcome = train(lab, config)
    assert (tmp_path / "scratch-ckpt" / "checkpoint-20" / "trainer_state.json").exists()
    store, prefix = checkpoint_store(lab, str(tmp_path / "bucket"))
    assert prefix == "" and latest_checkpoint(store, prefix) == "checkpoint-20"
    assert store.verify_dir("checkpoint-10") and store.verify_dir("checkpoint-20")
    assert load_run(lab, outcome.run_id).checkpoint_dir_durable == str(tmp_path / "bucket")

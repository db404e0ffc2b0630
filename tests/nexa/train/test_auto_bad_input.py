"""Nexa Auto's bad input: Ctrl-C at every kind of prompt, a budget below the estimate, a stopped session.

Each ends with one clear message, no plan or config written, and the session (when one runs) untouched.
"""

from __future__ import annotations

import os
import sys

import pexpect
import pytest
from auto_fixtures import QA_ROWS, tiny_model
from typer.testing import CliRunner

from nexa.cli import app
from nexa.ledger import Lab
from nexa.ledger.datasets import write_dataset_version
from nexa.session import client

CTRL_C, ENTER = "\x03", "\r"


@pytest.fixture
def lab_world(tmp_path, monkeypatch):
    env = {**os.environ, "NEXA_SESSION_DIR": str(tmp_path / "session"), "NO_COLOR": "1", "TERM": "xterm",
           "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "COLUMNS": "160"}
    monkeypatch.setenv("NEXA_SESSION_DIR", env["NEXA_SESSION_DIR"])
    lab = Lab.init(tmp_path / "lab")
    write_dataset_version(lab, "qa", [{**r, "split": "train"} for r in QA_ROWS], row_schema="qa")
    return {"lab": lab, "model": tiny_model(tmp_path / "tiny"), "env": env, "root": tmp_path}


# (flags that answer the questions before it, the prompt to interrupt): a text prompt, a select, the confirmation
PROMPTS = [([], "Model folder or hub id", [("Model to fine-tune", ENTER)]),
           (["--dataset", "qa@v1"], "Training method", []),
           (["--dataset", "qa@v1", "--method", "lora", "--steps", "2", "--batch-size", "2", "--backend", "local",
             "--budget", "none"], "Run this plan", [])]


@pytest.mark.parametrize("flags,prompt,before", PROMPTS, ids=["text", "select", "confirm"])
def test_ctrl_c_at_any_prompt_writes_nothing_and_keeps_the_session(lab_world, flags, prompt, before):
    client.start(600)
    try:
        client.add("hf", "HF_TOKEN", b"hf_ctrlc_secret", None)
        model = [] if prompt == "Model folder or hub id" else ["--model", str(lab_world["model"])]
        screen = pexpect.spawn(sys.executable, ["-m", "nexa.cli", "auto", "--lab", str(lab_world["lab"].root), *model, *flags],
                               env=lab_world["env"], cwd=str(lab_world["root"]), encoding="utf-8", timeout=90,
                               dimensions=(60, 160))
        for earlier, key in before:
            screen.expect(earlier)
            screen.send(key)
        screen.expect(prompt)
        screen.send(CTRL_C)
        screen.expect("cancelled: no plan was written and your session is untouched")
        screen.expect(pexpect.EOF)
        screen.close()
        assert screen.exitstatus == 130
        assert not (lab_world["lab"].root / "configs").exists()
        assert [t["name"] for t in client.listing()] == ["hf"]
    finally:
        client.stop()


def test_a_budget_below_the_estimate_is_refused_before_anything_is_written(lab_world):
    result = CliRunner().invoke(app, ["auto", "--lab", str(lab_world["lab"].root), "--model", str(lab_world["model"]),
                                      "--dataset", "qa@v1", "--method", "lora", "--steps", "2", "--batch-size", "2",
                                      "--backend", "infra", "--gpus", "H100:1", "--provider", "lambda", "--budget", "0.001",
                                      "--yes"])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "error: the estimate is $0.01" in message and "above your budget of $0.00; raise --budget" in message
    assert not (lab_world["lab"].root / "configs").exists()


@pytest.mark.parametrize("command", [["list"], ["add", "hf"], ["remove", "hf"], ["stop"]])
def test_a_stopped_session_says_so_in_one_line(lab_world, command):
    result = CliRunner().invoke(app, ["session", *command], input="hf_never_read\n")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no nexa session is running") and "nexa session start" in lines[0]
    assert "hf_never_read" not in result.output
    assert not (lab_world["root"] / "session").exists()  # nothing created by asking

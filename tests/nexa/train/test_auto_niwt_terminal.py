"""NIWT chosen in ``nexa auto`` with arrow keys: the lab's own NIWT stages run (profile, synthesize, adapters, gate)
and the run ends with the gate's summary and where the artifacts are.

The teacher is a random-init tiny model, so it scores below the gate's teacher floor: the gate must say so,
keep the failed student for inspection and register nothing; every stage before it must have run for real.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from pathlib import Path

import pexpect
from auto_fixtures import Transcript, files_containing, niwt_world

from nexa.ledger import Lab
from nexa.session import client

DOWN, ENTER = "\x1b[B", "\r"


def test_niwt_from_auto_runs_the_niwt_stages_and_ends_with_the_gate(tmp_path, monkeypatch):
    token = "hf_niwtTEST_" + secrets.token_hex(12)
    env = {**os.environ, "NEXA_SESSION_DIR": str(tmp_path / "session"), "NO_COLOR": "1", "TERM": "xterm",
           "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "COLUMNS": "200"}
    monkeypatch.setenv("NEXA_SESSION_DIR", env["NEXA_SESSION_DIR"])
    lab = Lab.init(tmp_path / "lab")
    teacher, data = niwt_world(tmp_path)
    client.start(3600)
    client.add("hf", "HF_TOKEN", token.encode(), None)
    start = time.time()
    screen = pexpect.spawn(sys.executable, ["-m", "nexa.cli", "auto", "--lab", str(lab.root), "--steps", "4", "--batch-size", "4"],
                           env=env, cwd=str(tmp_path), encoding="utf-8", timeout=60, dimensions=(60, 200))
    transcript = Transcript()
    screen.logfile_read = transcript
    try:
        screen.expect("Model to fine-tune")
        screen.send(ENTER)  # "Another folder or a hub id..."
        screen.expect("Model folder or hub id")
        screen.send(str(teacher) + ENTER)
        screen.expect("Training data")
        screen.send(ENTER)  # prepare a file now
        screen.expect("File to prepare")
        screen.send(str(data) + ENTER)
        screen.expect("Dataset id for it")
        screen.send(ENTER)
        screen.expect("Training method")  # on sft (suggested): kd, then niwt below it
        screen.send(DOWN)
        screen.send(DOWN)
        screen.send(ENTER)
        screen.expect("Teacher model to distill")
        screen.send(ENTER)  # default: the model picked above
        screen.expect("Where to run")
        screen.send(ENTER)
        screen.expect("Budget in USD")
        screen.send(ENTER)
        screen.expect("Run this plan")
        screen.send(ENTER)
        screen.expect("NIWT gate: FAILED", timeout=150)
        screen.expect("artifacts")
        screen.expect(pexpect.EOF, timeout=30)
    finally:
        screen.close()
        client.stop()
    text = transcript.text.replace("\r", "")
    assert screen.exitstatus == 1, text[-3000:]
    assert "nexa.niwt.stages:student_niwt" in text  # the plan shown is the NIWT pipeline
    for stage in ("data", "teacher", "distill", "router", "profile", "synthesize"):
        assert f"▶ {stage}" in text and len(list((lab.root / ".nexa" / "durable" / "stages" / stage).iterdir())) == 1
    assert "teacher scores 0.000, below the floor" in " ".join(text.split())  # why it failed, in words
    pipelines = list((lab.root / "configs" / "auto").glob("niwt-*.yaml"))
    assert len(pipelines) == 1
    report = json.loads(next((lab.root / ".nexa" / "scratch" / "work").glob("student_niwt-*/gate_report.json")).read_text())
    assert [a["attempt"] for a in report["attempts"]] == [1, 2] and not report["attempts"][-1]["passed"]
    assert not (lab.root / ".nexa" / "durable" / "stages" / "student_niwt").exists()  # a failed gate registers nothing
    assert token not in transcript.text
    assert files_containing(token, [tmp_path / "lab", Path("/tmp")], since=start) == []

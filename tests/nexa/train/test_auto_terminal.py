"""``nexa auto`` and ``nexa session`` driven as a person would: the real program on a pseudo-terminal (pexpect).

One whole run is chosen with arrow keys and Enter on a tiny model and a tiny QA file; while it runs,
every process's command line is sampled, and afterwards the screen and every file written under the
test's folders and /tmp are searched for the session token.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import pexpect
import pytest
from auto_fixtures import Transcript, files_containing, qa_file, tiny_model

from nexa.ledger import Lab
from nexa.session import client

UP, ENTER = "\x1b[A", "\r"
NEXA = [sys.executable, "-m", "nexa.cli"]


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A lab, a tiny model beside a folder that is not one, a QA file, and a session holding a fresh token."""
    token = "hf_autoTEST_" + secrets.token_hex(12)
    env = {**os.environ, "NEXA_SESSION_DIR": str(tmp_path / "session"), "TMPDIR": str(tmp_path / "tmp"), "NO_COLOR": "1",
           "TERM": "xterm", "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "COLUMNS": "160"}
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("NEXA_SESSION_DIR", env["NEXA_SESSION_DIR"])
    lab = Lab.init(tmp_path / "lab")
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    (tmp_path / "models" / "notes").mkdir()
    (tmp_path / "models" / "notes" / "README.md").write_text("not a model")
    world = {"lab": lab, "model": tiny_model(tmp_path / "models" / "tiny"), "not_a_model": tmp_path / "models" / "notes",
             "data": qa_file(tmp_path / "qa.jsonl"), "token": token, "env": env, "root": tmp_path}
    client.start(3600)
    yield world
    if client.is_running():
        client.stop()


def _spawn(args: list[str], env: dict, cwd: Path) -> pexpect.spawn:
    return pexpect.spawn(NEXA[0], NEXA[1:] + args, env=env, cwd=str(cwd), encoding="utf-8", timeout=120,
                         dimensions=(60, 160))


def test_session_add_reads_a_hidden_prompt_and_list_shows_no_value(world):
    screen = _spawn(["session", "add", "hf", "--ttl", "30m"], world["env"], world["root"])
    transcript = Transcript()
    screen.logfile_read = transcript
    screen.expect("token for hf \\(hidden\\): ")
    screen.sendline(world["token"])
    screen.expect("stored hf \\(jobs get it as HF_TOKEN")
    screen.expect(pexpect.EOF)
    screen.close()
    assert screen.exitstatus == 0
    assert world["token"] not in transcript.text
    assert [(t["name"], t["env"]) for t in client.listing()] == [("hf", "HF_TOKEN")]


def test_a_whole_run_chosen_with_arrows_and_enter_never_shows_the_token(world):
    client.add("hf", "HF_TOKEN", world["token"].encode(), None)
    client.add("wandb", "WANDB_API_KEY", world["token"].encode(), None)  # W&B runs offline in the job: its files are scanned too
    start = time.time()
    watcher = _CmdlineWatcher(world["token"])
    screen = _spawn(["auto", "--lab", str(world["lab"].root), "--steps", "3", "--batch-size", "2", "--seq-len", "16"],
                    world["env"], world["root"])
    transcript = Transcript()
    screen.logfile_read = transcript
    watcher.start()
    try:
        screen.expect("Model to fine-tune")
        screen.send(ENTER)  # the only entry of an empty lab: "Another folder or a hub id..."
        screen.expect("Model folder or hub id")
        screen.send(str(world["not_a_model"]) + ENTER)
        screen.expect("is not a model folder")  # asked again, nothing written
        screen.expect("Model folder or hub id")
        screen.send(str(world["model"]) + ENTER)
        screen.expect("Training data")
        screen.send(ENTER)  # "Prepare a file now (nexa data prepare)..."
        screen.expect("File to prepare")
        screen.send(str(world["data"]) + ENTER)
        screen.expect("Dataset id for it")
        screen.send(ENTER)  # default: the file's name
        screen.expect("Training method")  # the cursor starts on the suggestion (sft for a tiny model)
        screen.send(UP)  # skips the disabled qlora entry
        screen.send(ENTER)
        screen.expect("Where to run")
        screen.send(ENTER)  # local (infra is disabled where `nexa infra` is absent)
        screen.expect("Budget in USD")
        screen.send(ENTER)  # none
        screen.expect("Run this plan")
        screen.send(ENTER)
        screen.expect("eval summary", timeout=240)
        screen.expect("artifacts")
        screen.expect(pexpect.EOF, timeout=60)
    finally:
        watcher.stop()
        screen.close()
    assert screen.exitstatus == 0, transcript.text[-3000:]
    text = transcript.text
    assert "method:\n- sft\n- lora" in text.replace("\r", "")  # the arrow picked LoRA
    assert "session tokens for the jobs: HF_TOKEN, WANDB_API_KEY" in text
    configs = list((world["lab"].root / "configs" / "auto").glob("*.yaml"))
    assert len(configs) == 1 and "qa@v1" in configs[0].read_text()
    assert watcher.children_with_token_in_env >= 1, "the train job never had HF_TOKEN in its environment"
    assert watcher.leaks == []
    assert world["token"] not in text
    assert files_containing(world["token"], [world["root"], Path("/tmp")], since=start) == []


def test_without_a_terminal_it_names_the_missing_answer(world):
    done = subprocess.run(NEXA + ["auto", "--lab", str(world["lab"].root), "--model", str(world["model"])],
                          env=world["env"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: no terminal to ask 'Training data': pass --dataset")
    assert not (world["lab"].root / "configs").exists()


def test_a_config_file_answers_every_question_but_the_confirmation(world):
    config = world["root"] / "plan.yaml"
    config.write_text(f"name: from-file\nmethod: sft+lora\nmodel: {{pretrained: {world['model']}}}\n"
                      f"data: {{train: [qa@v1], tokenizer: {world['model']}, seq_len: 16}}\noptim: {{max_steps: 2, batch_size: 2}}\n")
    done = subprocess.run(NEXA + ["auto", "--lab", str(world["lab"].root), "--config", str(config), "--budget", "none",
                                  "--backend", "local"],
                          env=world["env"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == "error: no terminal to confirm 'Run this plan?': pass --yes"
    assert "name: from-file" in done.stderr and "cost estimate" in done.stderr  # resolved and priced, never prompted
    assert not (world["lab"].root / "configs").exists()


class _CmdlineWatcher(threading.Thread):
    """Samples every process's /proc/<pid>/cmdline (and the nexa jobs' environments) while the run lasts."""

    def __init__(self, token: str):
        super().__init__(daemon=True)
        self.token, self.leaks, self.children_with_token_in_env = token.encode(), [], 0
        self._stop_event, self._seen = threading.Event(), set()

    def run(self) -> None:
        while not self._stop_event.is_set():
            for pid in (p for p in os.listdir("/proc") if p.isdigit()):
                self._look(pid)
            time.sleep(0.05)

    def _look(self, pid: str) -> None:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if self.token in cmdline:
                self.leaks.append(cmdline.decode(errors="replace"))
            if b"nexa.cli\0train" in cmdline and pid not in self._seen:
                if b"HF_TOKEN=" + self.token in Path(f"/proc/{pid}/environ").read_bytes():
                    self._seen.add(pid)
                    self.children_with_token_in_env += 1
        except OSError:
            pass  # the process ended between listing and reading

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

"""Kill ``nexa distill materialize`` half-way, run it again: it finishes and pays for no answered prompt twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fake_teacher_server import MODEL, SECRET, FakeTeacherServer, make_prompts

from nexa.ledger.datasets import read_dataset_rows
from nexa.ledger.runs import load_run

SRC = Path(__file__).resolve().parents[3] / "src"


def _command(lab, server, ref) -> list[str]:
    return [sys.executable, "-m", "nexa.cli", "distill", "materialize", "--lab", str(lab.root), "--dataset", ref,
            "--teacher", server.url, "--teacher-model", MODEL, "--out", "paired", "--json", "--concurrency", "4",
            "--backoff-s", "0.01", "--max-backoff-s", "0.05", "--timeout-s", "1.0", "--max-attempts", "12"]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(SRC), "OPENAI_API_KEY": SECRET, "HF_HUB_OFFLINE": "1"}


def _cached_prompts(lab) -> set[str]:
    """Prompts whose answers are in the durable cache (finished shards only: written atomically, named by their hash)."""
    shards = lab.durable().get_blobs("teacher-cache")
    return {entry["request"]["messages"][-1]["content"] for data in shards.values() for entry in json.loads(data)["entries"]}


def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_killed_half_way_the_rerun_completes_without_asking_answered_prompts_again(lab):
    ref = make_prompts(lab, 300)
    with FakeTeacherServer(fail_rate=0.2, seed=3, stall_s=1.5, retry_after="0") as server:
        server.hold_after_billed = 150  # answer 150 prompts, then hold every call until the client is killed
        first = subprocess.Popen(_command(lab, server, ref), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for(lambda: server.total_billed >= 150, 60, "150 answered prompts")
            _wait_for(lambda: len(_cached_prompts(lab)) >= 150, 10, "150 cached answers")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        cached_at_kill = _cached_prompts(lab)
        requests_at_kill, billed_at_kill = server.snapshot()
        server.hold_after_billed = None
        server.released.set()

        second = subprocess.run(_command(lab, server, ref), env=_env(), capture_output=True, text=True, timeout=120)
        assert second.returncode == 0, second.stderr[-2000:]
        requests, billed = server.snapshot()

    assert first.returncode == -signal.SIGKILL
    assert len(cached_at_kill) == 150 and set(cached_at_kill) == set(billed_at_kill)
    asked_again = {p for p in requests if requests[p] > requests_at_kill.get(p, 0)}
    assert not asked_again & cached_at_kill  # nothing answered before the kill was requested again
    assert len(billed) == 300 and set(billed.values()) == {1}  # every prompt paid for exactly once overall

    out = json.loads(second.stdout)
    assert out["status"] == "succeeded" and out["cache_hits"] == 150 and out["failed"] == 0
    assert out["calls"] >= sum(requests.values()) - sum(requests_at_kill.values())
    rows = read_dataset_rows(lab, out["dataset"])
    assert sorted(r["prompt"] for r in rows) == sorted(r["prompt"] for r in read_dataset_rows(lab, ref))
    killed = [p.stem for p in lab.manifests_dir.glob("*.json") if p.stem != out["run_id"]]
    assert len(killed) == 1 and load_run(lab, killed[0]).status == "running"  # the killed run is visible as such

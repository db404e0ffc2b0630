"""``--jobs 2``: independent stages run side by side in worker processes, with the one-process runner's results."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from nexa.ledger.runs import list_runs
from nexa.pipeline.runner import NodeTime, StageFailedError, run_pipeline
from nexa.pipeline.spec import load_pipeline


@pytest.fixture
def calls(tmp_path, monkeypatch):
    path = tmp_path / "calls.jsonl"
    monkeypatch.setenv("TOY_CALLS_FILE", str(path))  # the workers are spawned with this environment
    import toy_stages

    monkeypatch.setattr(toy_stages, "CALLS", path)
    return lambda: [json.loads(line)["stage"] for line in path.read_text().splitlines()] if path.exists() else []


def _pipeline(tmp_path, stages, name="toy"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"schema_version": 1, "name": name, "seed": 42, "stages": stages}))
    return path


DIAMOND = [
    {"name": "numbers", "uses": "toy_stages:numbers", "with": {"n": 5}},
    {"name": "left", "uses": "toy_stages:span", "needs": ["numbers"], "with": {"seconds": 1.0, "source": "numbers"}},
    {"name": "right", "uses": "toy_stages:span", "needs": ["numbers"], "with": {"seconds": 1.0, "source": "numbers"}},
    {"name": "total", "uses": "toy_stages:total", "needs": ["numbers", "left", "right"]},
]


def _span(result, name):
    return json.loads((result.outputs[name] / "span.json").read_text())


def test_independent_stages_overlap_in_two_workers_and_give_the_one_process_results(lab, tmp_path, calls):
    parallel = run_pipeline(lab, load_pipeline(_pipeline(tmp_path, DIAMOND)), jobs=2)
    left, right = _span(parallel, "left"), _span(parallel, "right")
    assert left["start"] < right["end"] and right["start"] < left["end"]  # they ran at the same time
    assert left["pid"] != right["pid"] and os.getpid() not in (left["pid"], right["pid"])
    assert [s.name for s in parallel.stages] == ["numbers", "left", "right", "total"]  # the file's order
    assert all(s.status == "ran" for s in parallel.stages)
    assert json.loads((parallel.outputs["total"] / "total.json").read_text()) == 10
    pipeline_run = next(r for r in list_runs(lab) if r.run_type == "pipeline")
    assert pipeline_run.status == "succeeded" and [s.name for s in pipeline_run.stages] == ["numbers", "left", "right", "total"]
    stage_runs = [r for r in list_runs(lab) if r.parent_run_id == pipeline_run.run_id]
    assert sorted(r.stage for r in stage_runs) == ["left", "numbers", "right", "total"]
    assert all(r.status == "succeeded" and r.cost is not None and r.inputs for r in stage_runs if r.stage != "numbers")

    again = run_pipeline(lab, load_pipeline(_pipeline(tmp_path, DIAMOND)), jobs=1)
    assert [s.status for s in again.stages] == ["cached"] * 4  # the same keys, whichever process ran them
    assert calls().count("left") == 1


def test_node_time_bills_shared_seconds_once():
    clock = iter([0.0, 2.0, 6.0, 10.0])
    node = NodeTime(clock=lambda: next(clock))
    node.start("a")
    node.start("b")
    assert node.stop("b") == (4.0, 2.0)  # 4 s, all of them shared with a: half each
    assert node.stop("a") == (10.0, 8.0)  # alone 2 + 4 s, half of the 4 shared
    # the bills add up to the 10 s the node was busy, not to the 14 s of stage time


def test_a_failing_stage_lets_the_running_one_finish_and_commit(lab, tmp_path, calls):
    stages = [
        {"name": "bad", "uses": "toy_stages:explode"},
        {"name": "slow", "uses": "toy_stages:span", "with": {"seconds": 1.5}},
        {"name": "after", "uses": "toy_stages:total", "needs": ["bad"]},
    ]
    with pytest.raises(StageFailedError, match="boom") as raised:
        run_pipeline(lab, load_pipeline(_pipeline(tmp_path, stages)), jobs=2)
    assert isinstance(raised.value.cause, RuntimeError)  # the stage's own exception crossed the process boundary
    runs = {r.run_type: r for r in list_runs(lab)}
    assert runs["bad"].status == "failed" and "boom" in runs["bad"].error
    assert runs["slow"].status == "succeeded" and runs["pipeline"].status == "failed"
    assert "after" not in calls()
    rerun = run_pipeline(lab, load_pipeline(_pipeline(tmp_path, stages[1:2])), jobs=2)
    assert [s.status for s in rerun.stages] == ["cached"]  # the slow stage's work was kept


def test_a_prune_waits_for_the_parallel_reader_of_the_same_input(lab, tmp_path, calls):
    stages = [
        {"name": "weights", "uses": "toy_stages:weights"},
        {"name": "reader", "uses": "toy_stages:needs_weights_slowly", "needs": ["weights"]},
        {"name": "pruner", "uses": "toy_stages:prune_when_asked", "needs": ["weights"]},
    ]
    result = run_pipeline(lab, load_pipeline(_pipeline(tmp_path, stages)), jobs=2)
    assert (result.outputs["reader"] / "size.txt").read_text() == "70"  # read whole, not deleted under it
    read_end = json.loads((result.outputs["reader"] / "end.json").read_text())
    assert json.loads((result.outputs["pruner"] / "pruned_at.json").read_text()) >= read_end
    assert not (result.outputs["weights"] / "model" / "weights.bin").exists()


def test_a_worker_that_dies_fails_its_stage_and_closes_its_run(lab, tmp_path, calls):
    stages = [{"name": "oom", "uses": "toy_stages:die"}]
    with pytest.raises(StageFailedError, match="died"):
        run_pipeline(lab, load_pipeline(_pipeline(tmp_path, stages)), jobs=2)
    runs = {r.run_type: r for r in list_runs(lab)}
    assert runs["oom"].status == "failed" and "exit code 9" in runs["oom"].error


def test_workers_die_with_a_sigkilled_runner(lab, tmp_path):
    pid_file = tmp_path / "worker.pid"
    stages = [{"name": "long", "uses": "toy_stages:pid_then_sleep", "with": {"pid_file": str(pid_file)}}]
    path = _pipeline(tmp_path, stages)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    runner = subprocess.Popen([sys.executable, "-m", "nexa.cli", "run", str(path), "--lab", str(lab.root), "--jobs", "2"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not pid_file.exists() and runner.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pid_file.exists(), runner.stderr.read().decode()[-2000:] if runner.poll() is not None else "no worker started"
    worker = int(Path(pid_file).read_text())
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker)


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return status != "Z"  # a zombie has ended; only its parent's wait is missing


def test_a_pruned_output_is_rebuilt_with_the_threads_it_was_made_with(lab, tmp_path, calls, monkeypatch):
    """The weights are made in a one-thread worker; rebuilt later in the runner's process (two threads here), the
    rebuild must use one thread too, or float sums (here: the bytes) come out different and the rebuild is refused."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    import torch

    if (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()) < 2:
        pytest.skip("needs 2 cores, so that a worker's share (1 thread) differs from the runner's own threads")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _prune_then_rebuild(lab, tmp_path, calls, torch)
    finally:
        torch.set_num_threads(before)


def _prune_then_rebuild(lab, tmp_path, calls, torch):
    stages = [{"name": "weights", "uses": "toy_stages:threaded_weights"},
              {"name": "prune", "uses": "toy_stages:prune_then_use", "needs": ["weights"]}]
    first = run_pipeline(lab, load_pipeline(_pipeline(tmp_path, stages)), jobs=2)
    assert not (first.outputs["weights"] / "model" / "weights.bin").exists()
    later = run_pipeline(lab, load_pipeline(_pipeline(tmp_path, stages + [
        {"name": "use", "uses": "toy_stages:needs_weights", "needs": ["weights"]}])), jobs=2)
    assert (later.outputs["use"] / "size.txt").read_text() == "10"  # one thread's bytes, rebuilt identical
    assert calls().count("weights") == 2 and torch.get_num_threads() == 2


def test_ctrl_c_stops_the_workers_and_closes_every_run_as_failed(lab, tmp_path, calls):
    stages = [{"name": "left", "uses": "toy_stages:span", "with": {"seconds": 60.0}},
              {"name": "right", "uses": "toy_stages:span", "with": {"seconds": 60.0}}]
    path = _pipeline(tmp_path, stages)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    runner = subprocess.Popen([sys.executable, "-m", "nexa.cli", "run", str(path), "--lab", str(lab.root), "--jobs", "2"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while sorted(calls()) != ["left", "right"] and runner.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(runner.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends: the runner and its workers
    _, err = runner.communicate(timeout=30)
    assert runner.returncode == 130 and "Traceback" not in err, err[-2000:]
    runs = {r.run_type: r for r in list_runs(lab)}
    assert runs["pipeline"].status == "failed"
    for stage in ("left", "right"):
        assert runs[stage].status == "failed" and "KeyboardInterrupt" in runs[stage].error
    assert not list((Path(lab.root) / ".nexa" / "durable" / "stages").glob("*/*/stage.json"))  # nothing committed

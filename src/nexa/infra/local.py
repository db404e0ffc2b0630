"""The local backend: the cloud lifecycle on this machine, so tests and CI exercise launch/sync/teardown.

A node is a process tree in its own session (``nexa run`` / ``nexa train``) with its own scratch
folder and the durable URL it was given. Stage outputs reach durable storage as each stage commits;
the launcher also copies the node's log there while it runs and at teardown, bills the node's uptime
at the lab's local price, kills it when that crosses the budget, and removes its scratch at the end.
A node killed half-way loses only its unfinished stage: launched again, it reuses every committed one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from nexa.infra.clusters import ClusterRecord, find_record, is_orphaned, process_alive, save_record
from nexa.infra.launch import LaunchRefused, LaunchRequest, LaunchResult, hourly_price
from nexa.infra.tailscale import AUTH_KEY_SECRET
from nexa.ledger import Lab
from nexa.ledger.runs import list_runs
from nexa.ledger.store import DurableStore

SYNC_EVERY_S = 5.0
POLL_S = 0.5


class _Terminated(Exception):
    """The launcher got SIGTERM; unwinding through it tears the node down."""


def launch_local(request: LaunchRequest, on_start=None) -> LaunchResult:
    """Start a node, watch it to the end (syncing, enforcing the budget), tear it down; every path tears down."""
    lab, name = request.lab, request.cluster_name
    previous = find_record(lab, name)
    if previous is not None and previous.status in ("launching", "running") and not is_orphaned(previous):
        raise LaunchRefused(f"cluster {name!r} is already running (pid {previous.pid}); `nexa infra down {name}` first")
    if previous is not None and is_orphaned(previous):
        teardown(lab, previous, status="down")
    node_dir = lab.root / ".nexa" / "nodes" / f"{name}-{uuid.uuid4().hex[:8]}"
    record = ClusterRecord(cluster=name, backend="local", target=str(request.target.resolve()), target_kind=request.target_kind,
                           durable=request.durable_url, usd_per_hour=hourly_price(request), budget_usd=request.budget_usd,
                           scratch=str(node_dir / "scratch"), log=str(lab.root / "runs" / "clusters" / f"{name}.log"),
                           launcher_pid=os.getpid())
    resume = previous is not None and previous.status in ("failed", "stopped", "down") and previous.run_id is not None
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous_handler = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    started = time.monotonic()
    status = "failed"
    try:
        process = _start_node(request, record, resume=resume)
        record.pid, record.status = process.pid, "running"
        save_record(lab, record)
        if on_start is not None:
            on_start(record)
        status = _watch(lab, record, process, started)
        record.run_id = _node_result(record).get("run_id") or _newest_run(lab, record)
    except (_Terminated, KeyboardInterrupt) as exc:
        record.error = f"launcher interrupted ({type(exc).__name__})"
    except BaseException as exc:  # any other failure still tears the node down, then propagates
        record.error = f"{type(exc).__name__}: {exc}"
        _finish(lab, record, "failed", started)
        raise
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_handler)
    _finish(lab, record, status, started)
    return LaunchResult(name, "local", record.run_id, record.status, record.durable, record.cost_usd, record.teardown)


def _finish(lab: Lab, record: ClusterRecord, status: str, started: float) -> None:
    record.cost_usd = record.usd_per_hour * (time.monotonic() - started) / 3600
    teardown(lab, record, status=status)


def _start_node(request: LaunchRequest, record: ClusterRecord, resume: bool) -> subprocess.Popen:
    scratch = Path(record.scratch or "")
    scratch.mkdir(parents=True, exist_ok=True)
    Path(record.log or os.devnull).parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **request.extra_env, "NEXA_SCRATCH": str(scratch), "NEXA_DURABLE": record.durable,
           "NEXA_PROVIDER": "local", "NEXA_SPOT": "1" if request.spot else "0"}
    if request.budget_usd is not None:
        env["NEXA_BUDGET_USD"] = str(request.budget_usd)
    env.pop("NEXA_RUN_ID", None)  # each run on the node picks its own id
    env.pop(AUTH_KEY_SECRET, None)  # a secret of the launcher's, never handed to a workload
    cli = [sys.executable, "-m", "nexa.cli"]
    if record.target_kind == "pipeline":
        command = [*cli, "run", record.target, "--lab", str(request.lab.root), "--json"]
    else:
        command = [*cli, "train", "--config", record.target, "--lab", str(request.lab.root), "--json", *(["--resume"] if resume else [])]
    log = open(record.log or os.devnull, "ab")  # noqa: SIM115 - the node owns it until it exits
    result = open(scratch.parent / "result.json", "wb")  # noqa: SIM115
    try:
        return subprocess.Popen(command, env=env, stdout=result, stderr=log, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=scratch)
    finally:
        log.close()
        result.close()


def _watch(lab: Lab, record: ClusterRecord, process: subprocess.Popen, started: float) -> str:
    """Wait for the node; sync its log every few seconds; stop it when its uptime cost crosses the budget."""
    last_sync, synced = time.monotonic(), {}
    while process.poll() is None:
        time.sleep(POLL_S)
        spent = record.usd_per_hour * (time.monotonic() - started) / 3600
        if record.budget_usd is not None and spent > record.budget_usd:
            record.error = f"spent ${spent:.4f}, over the budget of ${record.budget_usd:.4f}; node stopped"
            _kill_tree(record.pid)
            process.wait()
            return "stopped"
        if time.monotonic() - last_sync > SYNC_EVERY_S:
            sync(lab, record, synced)
            last_sync = time.monotonic()
    if process.returncode != 0:
        record.error = f"node exited with code {process.returncode}; see `nexa infra logs {record.cluster}`"
        return "failed"
    return "succeeded"


def teardown(lab: Lab, record: ClusterRecord, status: str) -> ClusterRecord:
    """Stop whatever is left of the node, sync its log to durable, remove its scratch, record the end."""
    _kill_tree(record.pid)
    sync(lab, record)
    if record.scratch and Path(record.scratch).parent.exists():
        shutil.rmtree(Path(record.scratch).parent)
    record.status, record.teardown, record.ended_at = status, True, datetime.now(timezone.utc)
    save_record(lab, record)
    return record


def sync(lab: Lab, record: ClusterRecord, synced: dict[str, tuple[int, int]] | None = None) -> list[str]:
    """Copy the node's log and its runs' logs to durable ``nodes/<cluster>/``; returns the keys written.

    ``synced`` (kept by the caller between syncs) remembers each file's size and mtime as last sent,
    so a periodic sync sends only the files that changed since, not every file every few seconds.
    """
    store = DurableStore(record.durable)
    synced = {} if synced is None else synced
    written = []
    files = [Path(record.log)] if record.log else []
    if record.run_id:
        files += [lab.logs_dir / f"{m.run_id}.jsonl" for m in list_runs(lab) if record.run_id in (m.run_id, m.parent_run_id)]
    for file in files:
        if not file.is_file():
            continue
        key, stat = f"nodes/{record.cluster}/{file.name}", file.stat()
        if synced.get(key) == (stat.st_size, stat.st_mtime_ns):
            continue
        store.put_bytes(key, file.read_bytes(), overwrite=True)
        synced[key] = (stat.st_size, stat.st_mtime_ns)
        written.append(key)
    return written


def down(lab: Lab, record: ClusterRecord) -> ClusterRecord:
    """``nexa infra down`` for a local cluster: tear it down whatever state it is in."""
    status = record.status if record.status in ("succeeded", "failed", "stopped") else "down"
    return teardown(lab, record, status=status)


def _kill_tree(pid: int | None) -> None:
    """SIGTERM the node's process group, then SIGKILL whatever is still there after a few seconds."""
    if pid is None or not process_alive(pid):
        return
    for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and process_alive(pid):
            time.sleep(0.1)
        if not process_alive(pid):
            return


def _node_result(record: ClusterRecord) -> dict:
    """The JSON the node printed on success (empty when it died first)."""
    path = Path(record.scratch or "").parent / "result.json"
    text = path.read_text().strip() if path.exists() else ""
    return json.loads(text.splitlines()[-1]) if text else {}


def _newest_run(lab: Lab, record: ClusterRecord) -> str | None:
    """The top-level run the node started (found in the ledger when the node died before printing it)."""
    mine = [m for m in list_runs(lab) if m.parent_run_id is None and m.started_at >= record.launched_at]
    return max(mine, key=lambda m: m.started_at).run_id if mine else None


def _raise_terminated(signum, frame) -> None:
    raise _Terminated()

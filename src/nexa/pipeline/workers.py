"""Where a pipeline's stages execute: in the runner's own process one at a time, or in worker processes side by side.

The golden pipeline's stages are small models on a CPU: one stage keeps one core busy in Python while the
other core idles, and half its stages do not depend on each other (the feedback round never waits for the
teacher, the KD student never waits for NIWT's). With ``--jobs 2`` the runner hands independent stages to
two worker processes, each with its share of the node's threads. A worker is a fresh interpreter (``spawn``:
no inherited OpenMP state, no inherited locks); it dies with the runner (``PR_SET_PDEATHSIG``), so a
SIGKILLed runner leaves nothing computing behind it, and whatever a worker had not committed simply runs
again on relaunch, as in one process.

A stage that prunes an input (verification deleting the teacher's weights) asks the runner over its pipe and
waits: the runner deletes only once no other running stage reads that input.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import pickle
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Callable

from nexa.ledger.console import console

Pruner = Callable[[str, list[str]], list[str]]
PR_SET_PDEATHSIG = 1
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass
class StageEvent:
    """What a lane reports about a stage: ``done`` (its output and run manifest), ``failed`` (the error, and the run
    manifest closed as failed; None when the worker died before it could close it) or ``prune`` (the stage asks to
    delete files of one of its inputs and waits for the answer)."""

    kind: str
    stage: str
    output: Any = None
    manifest: Any = None
    error: BaseException | None = None
    prune: tuple[str, list[str]] | None = None


def node_threads() -> int:
    """The torch threads this node gives one process: ``OMP_NUM_THREADS`` when set, else the usable cores."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class InlineLane:
    """``--jobs 1``: each stage runs in the runner's process as soon as it is submitted (progress bars live)."""

    def __init__(self, execute: Callable[[Any, Pruner], tuple[Any, Any]], pruner: Pruner):
        self._execute, self._pruner = execute, pruner
        self._events: list[StageEvent] = []

    @property
    def running(self) -> list[str]:
        return []

    @property
    def free(self) -> int:
        return 1

    def submit(self, job: Any) -> None:
        with console.status(f"[bold]{job.name}[/bold] running…"):
            try:
                output, manifest = self._execute(job, self._pruner)
            except Exception as exc:  # reported as the stage's failure by the runner, with the stage's run id
                self._events.append(StageEvent("failed", job.name, error=exc, manifest=job.manifest))
                return
        self._events.append(StageEvent("done", job.name, output=output, manifest=manifest))

    def wait(self, timeout: float) -> list[StageEvent]:
        events, self._events = self._events, []
        return events

    def answer_prune(self, stage: str, result: list[str] | BaseException) -> None:
        raise RuntimeError("an inline stage prunes directly; it never waits for an answer")

    def close(self, kill: bool = False) -> None:
        return None


@dataclass
class _Worker:
    process: Any
    conn: Connection
    stage: str | None = None
    started: float = field(default_factory=time.monotonic)


class WorkerLanes:
    """``--jobs N`` (N > 1): N worker processes, each running one stage at a time with ``threads`` torch threads."""

    def __init__(self, jobs: int, threads: int):
        context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        for _ in range(jobs):
            ours, theirs = context.Pipe(duplex=True)
            process = context.Process(target=_worker_main, args=(theirs, os.getpid(), threads),
                                      name="nexa-stage-worker", daemon=True)
            process.start()
            theirs.close()
            self._workers.append(_Worker(process, ours))
        self._status = console.status("starting stage workers…")
        self._status.start()

    @property
    def running(self) -> list[str]:
        return [w.stage for w in self._workers if w.stage is not None]

    @property
    def free(self) -> int:
        return sum(1 for w in self._workers if w.stage is None)

    def submit(self, job: Any) -> None:
        worker = next(w for w in self._workers if w.stage is None)
        worker.conn.send(job)
        worker.stage, worker.started = job.name, time.monotonic()

    def wait(self, timeout: float) -> list[StageEvent]:
        """Events from busy workers, waiting up to ``timeout`` seconds for the first one."""
        self._show()
        busy = {w.conn: w for w in self._workers if w.stage is not None}
        events = []
        for conn in wait(list(busy), timeout=timeout):
            events.append(self._receive(busy[conn]))
        return events

    def _receive(self, worker: _Worker) -> StageEvent:
        stage = worker.stage
        try:
            kind, *payload = worker.conn.recv()
        except (EOFError, OSError):
            worker.process.join(timeout=5)
            worker.stage = None
            return StageEvent("failed", stage, error=RuntimeError(
                f"the worker process running stage {stage!r} died (exit code {worker.process.exitcode}); "
                "the node may be out of memory"))
        if kind == "prune":
            return StageEvent("prune", stage, prune=(payload[0], payload[1]))
        worker.stage = None
        if kind == "done":
            return StageEvent("done", stage, output=payload[0], manifest=payload[1])
        return StageEvent("failed", stage, error=payload[0], manifest=payload[1])

    def answer_prune(self, stage: str, result: list[str] | BaseException) -> None:
        next(w for w in self._workers if w.stage == stage).conn.send(result)

    def _show(self) -> None:
        now = time.monotonic()
        running = [f"{w.stage} {now - w.started:.0f}s" for w in self._workers if w.stage is not None]
        self._status.update(f"[bold]running[/bold] {' · '.join(running)}" if running else "waiting…")

    def close(self, kill: bool = False) -> None:
        """Stop the workers: asked to exit after their stage, or killed at once (a failed or interrupted runner)."""
        self._status.stop()
        for worker in self._workers:
            if kill:
                worker.process.kill()
            elif worker.process.is_alive():
                try:
                    worker.conn.send(None)
                except (BrokenPipeError, OSError):
                    worker.process.kill()
        for worker in self._workers:
            worker.process.join(timeout=30)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()


def _worker_main(conn: Connection, runner_pid: int, threads: int) -> None:
    """A worker: run the jobs the runner sends, one at a time, until it sends ``None`` or goes away. Ctrl-C reaches
    the whole terminal group: the stage's run is closed as failed on the way out, the runner reports it."""
    _die_with(runner_pid)
    os.environ.update({**{name: str(threads) for name in THREAD_VARIABLES}, "TTY_COMPATIBLE": "0"})
    console.is_interactive = False  # live bars would fight the runner's status line on the same terminal
    try:
        _serve(conn)
    except KeyboardInterrupt:
        os._exit(130)


def _serve(conn: Connection) -> None:
    from nexa.pipeline.runner import run_job

    def ask_runner(name: str, relpaths: list[str]) -> list[str]:
        conn.send(("prune", name, relpaths))
        answer = conn.recv()
        if isinstance(answer, BaseException):
            raise answer
        return answer

    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            output, manifest = run_job(job, ask_runner)
        except Exception as exc:  # the stage's failure goes to the runner, which reports it with the run id
            conn.send(("failed", _sendable(exc), job.manifest))  # run_job closed the run as failed
            continue
        conn.send(("done", output, manifest))


def _sendable(exc: BaseException) -> BaseException:
    """The exception itself when it survives pickling (its type and fields reach the runner), else its text."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # an exception type whose constructor pickle cannot replay
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def _die_with(runner_pid: int) -> None:
    """Linux kills this worker when the runner dies, even by SIGKILL; started after the runner died, it exits."""
    if hasattr(os, "sched_getaffinity"):  # Linux: prctl is there
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != runner_pid:
        os._exit(1)

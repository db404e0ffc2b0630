"""Run a pipeline: each stage once the stages it needs are committed (``jobs`` at a time, side by side in worker
processes when more than one, :mod:`nexa.pipeline.workers`), skipped when a finished, hash-verified output for its
key exists.

A stage's key hashes its function, parameters, seed, the source of every module it can run
(:mod:`nexa.pipeline.codehash`) and the output hashes of
the stages it needs, so anything upstream that changes re-runs exactly what depends on it. Outputs are
written in scratch, copied to durable storage with per-file hashes, and only then committed by writing
``stage.json``; a stage killed half-way leaves no record and simply runs again.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from pydantic import BaseModel, ConfigDict, Field

from nexa.infra.cost import NodePricing, PriceTable
from nexa.ledger import ArtifactNotFoundError, ArtifactRef, CorruptArtifactError, Lab
from nexa.ledger.console import console
from nexa.ledger.hashing import sha256_file, sha256_json
from nexa.ledger.manifests import CostBreakdown, RunManifest, StageRecord, dump_manifest, load_manifest
from nexa.ledger.runs import RunContext, start_run
from nexa.ledger.store import DurableStore
from nexa.pipeline.codehash import code_hash
from nexa.pipeline.spec import PipelineSpec, StageSpec
from nexa.pipeline.workers import THREAD_VARIABLES, InlineLane, WorkerLanes, node_threads

STAGE_RECORD_VERSION = 1


class StageOutput(BaseModel):
    """``stage.json``: the commit record of one stage's outputs in durable storage."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = STAGE_RECORD_VERSION
    name: str
    key: str
    uses: str
    params: dict[str, Any]
    inputs: dict[str, str] = Field(description="Needed stage name -> its outputs_sha256.")
    outputs_sha256: str
    run_id: str
    seconds: float
    summary: dict[str, Any] = Field(default_factory=dict)
    threads: int | None = Field(None, description="torch threads the stage ran with (None: it did not load torch); a "
                                                   "rebuild of its pruned files uses as many, since float sums depend on it.")
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))


class StageFailedError(RuntimeError):
    """A stage raised; the message names the stage and its run so the log can be found."""

    def __init__(self, stage: str, run_id: str, cause: BaseException):
        self.stage, self.run_id, self.cause = stage, run_id, cause
        super().__init__(f"stage {stage!r} failed (run {run_id}): {type(cause).__name__}: {cause}")


@dataclass
class StageContext:
    """What a stage function receives: where to write, what it reads, and its own run."""

    lab: Lab
    name: str
    run: RunContext
    out: Path
    inputs: dict[str, Path]
    input_summaries: dict[str, dict[str, Any]]
    seed: int
    pipeline: str
    pruner: Callable[[str, list[str]], list[str]]

    def prune_input(self, name: str, relpaths: list[str]) -> list[str]:
        """Delete files of a needed stage's output on purpose (teacher weights after distillation)."""
        self.input(name)
        return self.pruner(name, relpaths)

    def input(self, name: str) -> Path:
        if name not in self.inputs:
            raise KeyError(f"stage {self.name!r} did not declare `needs: [{name}]`; it needs {sorted(self.inputs)}")
        return self.inputs[name]

    def summary_of(self, name: str) -> dict[str, Any]:
        return self.input_summaries[name]


@dataclass
class PipelineResult:
    run_id: str
    status: str
    stages: list[StageRecord]
    outputs: dict[str, Path]
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_json(self, lab: Lab) -> dict[str, Any]:
        """The ``--json`` result of ``nexa run`` and ``nexa demo``: stages, their outputs, and where the bundle,
        leaderboard and verify report landed (None when the pipeline has no such stage)."""
        bundle = self.outputs.get("verify")
        return {
            "run_id": self.run_id, "status": self.status, "lab": str(lab.root),
            "bundle": str(bundle / "bundle") if bundle else None,
            "leaderboard": str(self.outputs["eval"] / "leaderboard.parquet") if "eval" in self.outputs else None,
            "verify_report": str(bundle / "bundle" / "verify_report.json") if bundle else None,
            "stages": [{"name": s.name, "status": s.status, "seconds": round(s.seconds, 3)} for s in self.stages],
            "outputs": [{"stage": s.name, "path": str(self.outputs[s.name]), "sha256": s.outputs_sha256} for s in self.stages],
        }


class NodeTime:
    """The node's time, split between the stages that ran on it at once: a stage is billed the seconds it ran
    alone plus its share (1/k) of those it ran beside k - 1 others, so the stages' bills add up to the node's
    busy time, which is what the provider charges, whether the stages ran one at a time or side by side."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._spans: dict[str, list[float | None]] = {}

    def start(self, name: str) -> None:
        self._spans[name] = [self._clock(), None]

    def stop(self, name: str) -> tuple[float, float]:
        """The seconds ``name`` ran and the seconds it is billed for, now that it ends (spans still running count
        as running on)."""
        begin, end = self._spans[name][0], self._clock()
        self._spans[name][1] = end
        cuts = sorted({begin, end, *(t for span in self._spans.values() for t in span if t is not None and begin < t < end)})
        billed = 0.0
        for left, right in zip(cuts, cuts[1:]):
            middle = (left + right) / 2
            sharing = sum(1 for s, e in self._spans.values() if s <= middle and (e is None or e > middle))
            billed += (right - left) / max(sharing, 1)
        return end - begin, billed


@dataclass
class StageJob:
    """One stage's execution, everything a process needs to run it and commit its outputs (picklable, so that a
    worker process can take it): the stage, its key and durable prefix, its scratch folder, its inputs and its run."""

    stage: StageSpec
    lab: Lab
    key: str
    work: Path
    inputs: dict[str, Path]
    input_summaries: dict[str, dict[str, Any]]
    input_hashes: dict[str, str]
    seed: int
    pipeline: str
    manifest: RunManifest

    @property
    def name(self) -> str:
        return self.stage.name

    @property
    def prefix(self) -> str:
        return stage_prefix(self.name, self.key)


def run_job(job: StageJob, pruner: Callable[[str, list[str]], list[str]]) -> tuple[StageOutput, RunManifest]:
    """Run a stage's function and commit what it wrote: files to durable storage with their hashes, then
    ``stage.json``. The runner's process and a worker process both execute a stage through here."""
    run = RunContext(job.lab, job.manifest)
    context = StageContext(job.lab, job.name, run, job.work, job.inputs, job.input_summaries, job.seed, job.pipeline,
                           pruner)
    store = job.lab.durable()
    started = time.perf_counter()
    try:
        summary = job.stage.resolve()(context, **job.stage.params) or {}
        listing = store.put_dir(job.work, job.prefix)
        torch = sys.modules.get("torch")
        output = StageOutput(
            name=job.name, key=job.key, uses=job.stage.uses, params=job.stage.params, inputs=job.input_hashes,
            outputs_sha256=listing.sha256, run_id=run.run_id, seconds=time.perf_counter() - started, summary=summary,
            threads=torch.get_num_threads() if torch is not None else None,
        )
        run.add_output(output_ref(store, job.name, output))
        store.put_bytes(f"{job.prefix}/stage.json", dump_manifest(output), overwrite=True)
    except BaseException as exc:
        run.fail(exc)
        raise
    return output, run.manifest


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """This process's torch and OpenMP threads (its subprocesses' too) set to ``threads`` for a while."""
    if threads is None:
        yield
        return
    import torch

    before, env_before = torch.get_num_threads(), {k: os.environ.get(k) for k in THREAD_VARIABLES}
    torch.set_num_threads(threads)
    os.environ.update({k: str(threads) for k in THREAD_VARIABLES})
    try:
        yield
    finally:
        torch.set_num_threads(before)
        for name, value in env_before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def output_ref(store: DurableStore, name: str, output: StageOutput) -> ArtifactRef:
    prefix = stage_prefix(name, output.key)
    return ArtifactRef(kind="stage_output", ref=f"{name}:{output.key[:24]}", path=store.location(prefix),
                       sha256=output.outputs_sha256)


def stage_prefix(name: str, key: str) -> str:
    return f"stages/{name}/{key[:24]}"


class PipelineRunner:
    """Runs one pipeline in one lab: schedules its stages (``jobs`` at a time, each as soon as the stages it
    needs are committed) and holds the per-run cache of resolved stage outputs."""

    def __init__(self, lab: Lab, spec: PipelineSpec, jobs: int = 1):
        if jobs < 1:
            raise ValueError(f"jobs must be at least 1, got {jobs}")
        self.lab, self.spec, self.jobs = lab, spec, jobs
        self.store: DurableStore = lab.durable()
        self._records: dict[str, StageOutput] = {}
        self.prices = PriceTable.from_lab(lab)
        self.pricing = NodePricing.from_env()
        self._costs: list[CostBreakdown] = []
        self._paths: dict[str, Path] = {}
        self._node = NodeTime()
        self._jobs: dict[str, StageJob] = {}
        self._done: dict[str, StageRecord] = {}
        self._waiting_prunes: list[tuple[str, str, list[str]]] = []  # (asking stage, input, files)

    def run(self) -> PipelineResult:
        with start_run(self.lab, "pipeline", config=self.spec.model_dump(by_alias=True), seed=self.spec.seed) as run:
            run.log("pipeline_started", pipeline=self.spec.name, stages=[s.name for s in self.spec.stages], jobs=self.jobs)
            lanes = self._lanes()
            try:
                self._schedule(lanes, run)
            except BaseException as exc:
                lanes.close(kill=True)
                self._close_killed_runs(exc)
                raise
            lanes.close()
            for name, output in self._records.items():
                run.add_output(self._output_ref(name, output))
            stages = [self._done[s.name] for s in self.spec.stages]
            return PipelineResult(
                run.run_id, "succeeded", stages, dict(self._paths), {n: r.summary for n, r in self._records.items()}
            )

    def _close_killed_runs(self, cause: BaseException) -> None:
        """Stages still running when the pipeline stopped (Ctrl-C, a failure elsewhere, the budget) were killed with
        their workers: their runs are closed as failed, naming why, instead of staying ``running``."""
        for job in self._jobs.values():
            RunContext(self.lab, job.manifest).fail(RuntimeError(f"stopped with the pipeline: {type(cause).__name__}: {cause}"))
        self._jobs.clear()

    def _lanes(self) -> InlineLane | WorkerLanes:
        if self.jobs == 1:
            return InlineLane(run_job, self._prune)
        return WorkerLanes(self.jobs, threads=max(1, node_threads() // self.jobs))

    # -- scheduling ---------------------------------------------------------------------------
    def _schedule(self, lanes: InlineLane | WorkerLanes, run: RunContext) -> None:
        """Start every stage whose needs are committed while a lane is free, in the file's order; after a failure
        start nothing more, let the running stages finish (their work is kept), then report the first failure."""
        pending, failure = list(self.spec.stages), None
        while pending or lanes.running:
            while failure is None and lanes.free and (stage := self._next_ready(pending)) is not None:
                pending.remove(stage)
                self._start(stage, lanes, run)
                failure = failure or self._collect(lanes.wait(0), lanes, run)
            if not lanes.running:  # nothing left to wait for: done, failed, or stuck
                if failure is not None or pending:
                    raise failure or RuntimeError(f"stages {[s.name for s in pending]} can never start")
                break
            failure = self._collect(lanes.wait(0.5), lanes, run) or failure
        if failure is not None:
            raise failure

    def _next_ready(self, pending: list[StageSpec]) -> StageSpec | None:
        """The first pending stage whose needs are all committed and none of them waiting to be pruned."""
        pruning = {name for _, name, _ in self._waiting_prunes}
        for stage in pending:
            if all(n in self._records for n in stage.needs) and not pruning & set(stage.needs):
                return stage
        return None

    def _start(self, stage: StageSpec, lanes: InlineLane | WorkerLanes, run: RunContext) -> None:
        started = time.perf_counter()
        key = self._key(stage)
        cached = self._load_committed(stage.name, key)
        if cached is None:
            job = self._open_job(stage, key, run)
            self._jobs[stage.name] = job
            self._node.start(stage.name)
            lanes.submit(job)
            return
        self._accept(stage.name, cached)
        seconds = time.perf_counter() - started
        console.print(f"[green]✓[/green] {stage.name:<12} cached  ({seconds:.1f}s)  key {key[:12]}")
        run.log("stage_cached", stage=stage.name, key=key, seconds=seconds)
        self._record(StageRecord(name=stage.name, status="cached", seconds=seconds, key=key,
                                 outputs_sha256=cached.outputs_sha256), run)

    def _collect(self, events: list, lanes: InlineLane | WorkerLanes, run: RunContext) -> StageFailedError | None:
        """Handle what the lanes reported; returns the first stage failure among them."""
        failure = None
        for event in events:
            if event.kind == "prune":
                self._waiting_prunes.append((event.stage, *event.prune))
            elif event.kind == "done":
                self._finish(event.stage, event.output, event.manifest, run)
            else:
                failure = failure or self._failed(event.stage, event.error, event.manifest, run)
        self._answer_prunes(lanes)
        return failure

    def _finish(self, name: str, output: StageOutput, manifest: RunManifest, pipeline_run: RunContext) -> None:
        job = self._jobs.pop(name)
        seconds, billed = self._node.stop(name)
        self._commit(job, output, manifest, billed)
        console.print(f"[cyan]▶[/cyan] {name:<12} ran     ({seconds:.1f}s)  key {job.key[:12]}")
        pipeline_run.log("stage_ran", stage=name, key=job.key, seconds=seconds, run=output.run_id)
        self._record(StageRecord(name=name, status="ran", seconds=seconds, key=job.key, outputs_sha256=output.outputs_sha256,
                                 cost_usd=self._costs[-1].total_usd, run_id=output.run_id), pipeline_run)

    def _failed(self, name: str, error: BaseException, manifest: RunManifest | None,
                pipeline_run: RunContext) -> StageFailedError:
        job = self._jobs.pop(name)
        self._node.stop(name)
        if manifest is None:  # a worker that died could not close its run: closed here
            RunContext(self.lab, job.manifest).fail(error)
        pipeline_run.log("stage_failed", stage=name, run=job.manifest.run_id, error=str(error))
        failure = StageFailedError(name, job.manifest.run_id, error)
        failure.__cause__ = error
        return failure

    def _answer_prunes(self, lanes: InlineLane | WorkerLanes) -> None:
        """Delete what waiting stages asked to prune once no other running stage reads that input."""
        for asking in list(self._waiting_prunes):
            stage, name, relpaths = asking
            readers = [r for r in lanes.running if r != stage and name in self._jobs[r].stage.needs]
            if readers:
                continue
            self._waiting_prunes.remove(asking)
            try:
                answer: list[str] | BaseException = self._prune(name, relpaths)
            except KeyError as exc:  # the asking stage named files its input does not have: its own error
                answer = exc
            lanes.answer_prune(stage, answer)

    def _record(self, record: StageRecord, run: RunContext) -> None:
        """Add a stage to the pipeline's manifest (in the file's order), save it and check the budget."""
        self._done[record.name] = record
        run.update(stages=[self._done[s.name] for s in self.spec.stages if s.name in self._done],
                   cost=self._pipeline_cost(run), cost_estimate_usd_total=self._spent())
        run.save()
        self.pricing.check_budget(self._spent(), after=record.name)

    # -- one stage ----------------------------------------------------------------------------
    def _open_job(self, stage: StageSpec, key: str, pipeline_run: RunContext) -> StageJob:
        """Everything a stage's execution needs, with its run opened (``running``) and its inputs recorded."""
        for need in stage.needs:
            self._restore_if_pruned(need, pipeline_run)
        work = self._fresh_workdir(stage.name, key)
        run = start_run(
            self.lab, stage.run_type or stage.name, config=stage.params, seed=self.spec.seed,
            parent_run_id=pipeline_run.run_id, stage=stage.name,
        )
        for need in stage.needs:
            run.add_input(self._output_ref(need, self._records[need]))
        run.save()
        return StageJob(
            stage, self.lab, key, work, {n: self._paths[n] for n in stage.needs},
            {n: self._records[n].summary for n in stage.needs}, {n: self._records[n].outputs_sha256 for n in stage.needs},
            self.spec.seed, self.spec.name, run.manifest,
        )

    def _execute(self, stage: StageSpec, key: str, pipeline_run: RunContext, threads: int | None) -> StageOutput:
        """Run one stage here, now, with ``threads`` torch threads: a pruned output rebuilt for a stage about to start."""
        job = self._open_job(stage, key, pipeline_run)
        span = f"{stage.name} (rebuilt)"
        self._node.start(span)
        try:
            with console.status(f"[bold]{stage.name}[/bold] rebuilding…"), torch_threads(threads):
                output, manifest = run_job(job, self._prune)
        except Exception as exc:
            self._node.stop(span)
            pipeline_run.log("stage_failed", stage=stage.name, run=job.manifest.run_id, error=str(exc))
            raise StageFailedError(stage.name, job.manifest.run_id, exc) from exc
        _, billed = self._node.stop(span)
        self._commit(job, output, manifest, billed)
        return output

    def _commit(self, job: StageJob, output: StageOutput, manifest: RunManifest, billed_seconds: float) -> None:
        """A stage's committed output accepted: its run closed with its cost, its scratch copy kept or removed."""
        RunContext(self.lab, manifest).finish(self._cost(manifest, billed_seconds, float(output.summary.get("cost_usd", 0.0))))
        self._keep_or_remove(job.work, job.name, job.key)
        self._accept(job.name, output)

    def _cost(self, manifest: RunManifest, seconds: float, api_usd: float) -> CostBreakdown:
        """Compute time at the lab's price for this hardware, plus what the stage paid APIs."""
        cost = self.pricing.cost(self.prices, manifest.provider, manifest.gpu_type, seconds, api_usd=api_usd)
        self._costs.append(cost)
        return cost

    def _spent(self) -> float:
        return sum(c.total_usd for c in self._costs)

    def _pipeline_cost(self, run: RunContext) -> CostBreakdown:
        """The pipeline's bill: the sum of what its stages ran for (reused stages cost nothing)."""
        hours = sum(c.compute_hours for c in self._costs)
        compute, api = sum(c.compute_usd for c in self._costs), sum(c.api_usd for c in self._costs)
        per_hour = self._costs[-1].usd_per_hour if self._costs else 0.0
        return CostBreakdown(provider=run.manifest.provider, gpu_type=run.manifest.gpu_type, usd_per_hour=per_hour,
                             compute_hours=hours, compute_usd=compute, api_usd=api, total_usd=compute + api)

    # -- cache --------------------------------------------------------------------------------
    def _key(self, stage: StageSpec) -> str:
        return sha256_json(
            {
                "uses": stage.uses,
                "params": stage.params,
                "seed": self.spec.seed,
                "code": code_hash(stage.uses),
                "inputs": {n: self._records[n].outputs_sha256 for n in stage.needs},
            }
        )

    def _load_committed(self, name: str, key: str) -> StageOutput | None:
        """A committed output whose files all still hash right; a corrupt one is reported and redone."""
        prefix = stage_prefix(name, key)
        if not self.store.exists(f"{prefix}/stage.json"):
            return None
        output = load_manifest(StageOutput, self.store.get_bytes(f"{prefix}/stage.json"), self.store.location(f"{prefix}/stage.json"))
        try:
            self._verify_outputs(name, key)
        except (CorruptArtifactError, ArtifactNotFoundError) as exc:
            console.print(f"[red]✗[/red] {name}: cached output is corrupt ({exc}); running the stage again")
            self.store.delete(f"{prefix}/stage.json")
            return None
        return output

    def _verify_outputs(self, name: str, key: str) -> None:
        """Every committed file hashes right: rehashed in place on a local tier; on a remote one the local
        copy the stage's readers use is what gets checked (fetched once, hash-checked on the way)."""
        prefix = stage_prefix(name, key)
        skip = set(self._pruned(prefix))
        if self.store.is_local:
            self.store.verify_dir(prefix, skip=skip)
            return
        dest = self._copy_dir(name, key)
        if (dest / ".complete").exists() and self._matches_listing(dest, prefix, skip):
            return
        shutil.rmtree(dest, ignore_errors=True)
        self.store.fetch_dir(prefix, dest, skip=skip)
        (dest / ".complete").touch()

    def _matches_listing(self, local: Path, prefix: str, skip: set[str]) -> bool:
        return all((local / rel).is_file() and sha256_file(local / rel) == digest
                   for rel, digest in self.store.dir_listing(prefix).items() if rel not in skip)

    def _accept(self, name: str, output: StageOutput) -> None:
        self._records[name] = output
        self._paths[name] = self._local_copy(name, output.key)

    def _local_copy(self, name: str, key: str) -> Path:
        prefix = stage_prefix(name, key)
        if self.store.is_local:
            return self.store.local_path(prefix)
        dest = self._copy_dir(name, key)
        if not (dest / ".complete").exists():
            self.store.fetch_dir(prefix, dest, skip=set(self._pruned(prefix)))
            (dest / ".complete").touch()
        return dest

    def _copy_dir(self, name: str, key: str) -> Path:
        """Where a remote tier's stage output is kept on this node for the stages that read it."""
        return self.lab.scratch / "stage-cache" / name / key

    def _keep_or_remove(self, work: Path, name: str, key: str) -> None:
        """A stage's scratch output, once committed: on a remote tier it becomes the local copy later stages
        read (it is byte for byte what was uploaded) instead of being deleted and downloaded again."""
        if self.store.is_local:
            shutil.rmtree(work)
            return
        dest = self._copy_dir(name, key)
        shutil.rmtree(dest, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        work.rename(dest)  # both live in this node's scratch
        (dest / ".complete").touch()

    # -- pruning (teacher weights deleted after verification) ----------------------------------
    def _pruned(self, prefix: str) -> list[str]:
        key = f"{prefix}/pruned.json"
        if not self.store.exists(key):
            return []
        import json

        return json.loads(self.store.get_bytes(key))

    def _restore_if_pruned(self, name: str, pipeline_run: RunContext) -> None:
        """A stage about to run needs files that were deliberately deleted: rebuild them from their inputs."""
        output = self._records[name]
        prefix = stage_prefix(name, output.key)
        if not self._pruned(prefix):
            return
        console.print(f"[yellow]↻[/yellow] {name}: its outputs were pruned; rebuilding them for a downstream stage")
        pipeline_run.log("stage_restore", stage=name)
        self.store.delete(f"{prefix}/stage.json")
        self.store.delete(f"{prefix}/pruned.json")
        rebuilt = self._execute(self.spec.stage(name), output.key, pipeline_run, output.threads)
        if rebuilt.outputs_sha256 != output.outputs_sha256:
            raise CorruptArtifactError(
                self.store.location(prefix), output.outputs_sha256, rebuilt.outputs_sha256,
                reason=f"rebuilding pruned stage {name!r} did not reproduce its outputs (non-deterministic stage)",
            )

    def _prune(self, name: str, relpaths: list[str]) -> list[str]:
        """Delete files of a committed output, recording them in ``pruned.json``; the record stays valid."""
        import json

        prefix = stage_prefix(name, self._records[name].key)
        listing = self.store.dir_listing(prefix)
        unknown = [r for r in relpaths if r not in listing]
        if unknown:
            raise KeyError(f"stage {name!r} has no output files {unknown}")
        pruned = sorted(set(self._pruned(prefix)) | set(relpaths))
        self.store.put_bytes(f"{prefix}/pruned.json", json.dumps(pruned).encode(), overwrite=True)
        for rel in relpaths:
            self.store.delete(f"{prefix}/{rel}")
            if not self.store.is_local:  # the scratch copy of a remote output goes too: pruned means gone
                (self._paths[name] / rel).unlink(missing_ok=True)
                (self._paths[name] / ".complete").unlink(missing_ok=True)  # a later restore fetches them again
        return relpaths

    # -- paths --------------------------------------------------------------------------------
    def _fresh_workdir(self, name: str, key: str) -> Path:
        root = self.lab.scratch / "work"
        for stale in root.glob(f"{name}-{key[:12]}-*"):
            shutil.rmtree(stale)
        work = root / f"{name}-{key[:12]}-{uuid.uuid4().hex[:8]}"
        work.mkdir(parents=True)
        return work

    def _output_ref(self, name: str, output: StageOutput) -> ArtifactRef:
        return output_ref(self.store, name, output)


def run_pipeline(lab: Lab, spec: PipelineSpec, jobs: int = 1) -> PipelineResult:
    return PipelineRunner(lab, spec, jobs).run()

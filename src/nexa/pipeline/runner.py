"""Run a pipeline: stages in order, each skipped when a finished, hash-verified output for its key exists.

A stage's key hashes its function, parameters, seed, the source of every module it can run
(:mod:`nexa.pipeline.codehash`) and the output hashes of
the stages it needs, so anything upstream that changes re-runs exactly what depends on it. Outputs are
written in scratch, copied to durable storage with per-file hashes, and only then committed by writing
``stage.json``; a stage killed half-way leaves no record and simply runs again.
"""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field

from nexa.infra.cost import NodePricing, PriceTable
from nexa.ledger import ArtifactNotFoundError, ArtifactRef, CorruptArtifactError, Lab
from nexa.ledger.console import console
from nexa.ledger.hashing import sha256_json
from nexa.ledger.manifests import CostBreakdown, StageRecord, dump_manifest, load_manifest
from nexa.ledger.runs import RunContext, start_run
from nexa.ledger.store import DurableStore
from nexa.pipeline.codehash import code_hash
from nexa.pipeline.spec import PipelineSpec, StageSpec

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


class PipelineRunner:
    """Runs one pipeline in one lab; holds the per-run cache of resolved stage outputs."""

    def __init__(self, lab: Lab, spec: PipelineSpec):
        self.lab, self.spec = lab, spec
        self.store: DurableStore = lab.durable()
        self._records: dict[str, StageOutput] = {}
        self.prices = PriceTable.from_lab(lab)
        self.pricing = NodePricing.from_env()
        self._costs: list[CostBreakdown] = []
        self._paths: dict[str, Path] = {}

    def run(self) -> PipelineResult:
        with start_run(self.lab, "pipeline", config=self.spec.model_dump(by_alias=True), seed=self.spec.seed) as run:
            run.log("pipeline_started", pipeline=self.spec.name, stages=[s.name for s in self.spec.stages])
            stages: list[StageRecord] = []
            for stage in self.spec.stages:
                record = self._run_or_reuse(stage, run)
                stages.append(record)
                run.update(stages=list(stages), cost=self._pipeline_cost(run), cost_estimate_usd_total=self._spent())
                run.save()
                self.pricing.check_budget(self._spent(), after=stage.name)
            for name, output in self._records.items():
                run.add_output(self._output_ref(name, output))
            return PipelineResult(
                run.run_id, "succeeded", stages, dict(self._paths), {n: r.summary for n, r in self._records.items()}
            )

    # -- one stage ----------------------------------------------------------------------------
    def _run_or_reuse(self, stage: StageSpec, pipeline_run: RunContext) -> StageRecord:
        started = time.perf_counter()
        key = self._key(stage)
        cached = self._load_committed(stage.name, key)
        if cached is not None:
            self._accept(stage.name, cached)
            seconds = time.perf_counter() - started
            console.print(f"[green]✓[/green] {stage.name:<12} cached  ({seconds:.1f}s)  key {key[:12]}")
            pipeline_run.log("stage_cached", stage=stage.name, key=key, seconds=seconds)
            return StageRecord(name=stage.name, status="cached", seconds=seconds, key=key, outputs_sha256=cached.outputs_sha256)
        output = self._execute(stage, key, pipeline_run)
        seconds = time.perf_counter() - started
        console.print(f"[cyan]▶[/cyan] {stage.name:<12} ran     ({seconds:.1f}s)  key {key[:12]}")
        pipeline_run.log("stage_ran", stage=stage.name, key=key, seconds=seconds, run=output.run_id)
        return StageRecord(name=stage.name, status="ran", seconds=seconds, key=key, outputs_sha256=output.outputs_sha256,
                           cost_usd=self._costs[-1].total_usd, run_id=output.run_id)

    def _execute(self, stage: StageSpec, key: str, pipeline_run: RunContext) -> StageOutput:
        for need in stage.needs:
            self._restore_if_pruned(need, pipeline_run)
        func = stage.resolve()
        work = self._fresh_workdir(stage.name, key)
        run = start_run(
            self.lab, stage.run_type or stage.name, config=stage.params, seed=self.spec.seed,
            parent_run_id=pipeline_run.run_id, stage=stage.name,
        )
        for need in stage.needs:
            run.add_input(self._output_ref(need, self._records[need]))
        context = StageContext(
            self.lab, stage.name, run, work, {n: self._paths[n] for n in stage.needs},
            {n: self._records[n].summary for n in stage.needs}, self.spec.seed, self.spec.name, self._prune,
        )
        started = time.perf_counter()
        try:
            with console.status(f"[bold]{stage.name}[/bold] running…"):
                summary = func(context, **stage.params) or {}
            prefix = self._prefix(stage.name, key)
            listing = self.store.put_dir(work, prefix)
            output = StageOutput(
                name=stage.name, key=key, uses=stage.uses, params=stage.params,
                inputs={n: self._records[n].outputs_sha256 for n in stage.needs},
                outputs_sha256=listing.sha256, run_id=run.run_id,
                seconds=time.perf_counter() - started, summary=summary,
            )
            run.add_output(self._output_ref(stage.name, output))
            self.store.put_bytes(f"{prefix}/stage.json", dump_manifest(output), overwrite=True)
        except BaseException as exc:
            run.fail(exc)
            pipeline_run.log("stage_failed", stage=stage.name, run=run.run_id, error=str(exc))
            raise StageFailedError(stage.name, run.run_id, exc) from exc
        run.finish(self._cost(run, output.seconds, float(summary.get("cost_usd", 0.0))))
        shutil.rmtree(work, ignore_errors=False)
        self._accept(stage.name, output)
        return output

    def _cost(self, run: RunContext, seconds: float, api_usd: float) -> CostBreakdown:
        """Compute time at the lab's price for this hardware, plus what the stage paid APIs."""
        cost = self.pricing.cost(self.prices, run.manifest.provider, run.manifest.gpu_type, seconds, api_usd=api_usd)
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
        prefix = self._prefix(name, key)
        if not self.store.exists(f"{prefix}/stage.json"):
            return None
        output = load_manifest(StageOutput, self.store.get_bytes(f"{prefix}/stage.json"), self.store.location(f"{prefix}/stage.json"))
        try:
            self._verify_outputs(prefix)
        except (CorruptArtifactError, ArtifactNotFoundError) as exc:
            console.print(f"[red]✗[/red] {name}: cached output is corrupt ({exc}); running the stage again")
            self.store.delete(f"{prefix}/stage.json")
            return None
        return output

    def _verify_outputs(self, prefix: str) -> None:
        self.store.verify_dir(prefix, skip=set(self._pruned(prefix)))

    def _accept(self, name: str, output: StageOutput) -> None:
        self._records[name] = output
        self._paths[name] = self._local_copy(name, output.key)

    def _local_copy(self, name: str, key: str) -> Path:
        prefix = self._prefix(name, key)
        if self.store.is_local:
            return self.store.local_path(prefix)
        dest = self.lab.scratch / "stage-cache" / name / key
        if not (dest / ".complete").exists():
            self.store.fetch_dir(prefix, dest, skip=set(self._pruned(prefix)))
            (dest / ".complete").touch()
        return dest

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
        prefix = self._prefix(name, output.key)
        if not self._pruned(prefix):
            return
        console.print(f"[yellow]↻[/yellow] {name}: its outputs were pruned; rebuilding them for a downstream stage")
        pipeline_run.log("stage_restore", stage=name)
        self.store.delete(f"{prefix}/stage.json")
        self.store.delete(f"{prefix}/pruned.json")
        rebuilt = self._execute(self.spec.stage(name), output.key, pipeline_run)
        if rebuilt.outputs_sha256 != output.outputs_sha256:
            raise CorruptArtifactError(
                self.store.location(prefix), output.outputs_sha256, rebuilt.outputs_sha256,
                reason=f"rebuilding pruned stage {name!r} did not reproduce its outputs (non-deterministic stage)",
            )

    def _prune(self, name: str, relpaths: list[str]) -> list[str]:
        """Delete files of a committed output, recording them in ``pruned.json``; the record stays valid."""
        import json

        prefix = self._prefix(name, self._records[name].key)
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
    @staticmethod
    def _prefix(name: str, key: str) -> str:
        return f"stages/{name}/{key[:24]}"

    def _fresh_workdir(self, name: str, key: str) -> Path:
        root = self.lab.scratch / "work"
        for stale in root.glob(f"{name}-{key[:12]}-*"):
            shutil.rmtree(stale)
        work = root / f"{name}-{key[:12]}-{uuid.uuid4().hex[:8]}"
        work.mkdir(parents=True)
        return work

    def _output_ref(self, name: str, output: StageOutput) -> ArtifactRef:
        prefix = self._prefix(name, output.key)
        return ArtifactRef(kind="stage_output", ref=f"{name}:{output.key[:24]}", path=self.store.location(prefix), sha256=output.outputs_sha256)


def run_pipeline(lab: Lab, spec: PipelineSpec) -> PipelineResult:
    return PipelineRunner(lab, spec).run()

"""The versioned contracts every layer writes and reads: run and dataset manifests and their parts.

Each model carries ``schema_version``; :func:`load_manifest` refuses a newer version than this code
understands and turns pydantic's errors into one message that lists every bad field.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nexa.ledger.errors import ManifestValidationError

RUN_MANIFEST_VERSION = 1
DATASET_MANIFEST_VERSION = 1

RunStatus = Literal["running", "succeeded", "failed"]
StageStatus = Literal["ran", "cached"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ArtifactRef(_Contract):
    """A pointer to one artifact: what it is, where it lives and the hash it must have."""

    kind: str = Field(description="dataset, checkpoint, tokenizer, pack, eval_report, leaderboard, bundle, ...")
    ref: str = Field(description="Logical name, e.g. 'golden-reasoning@v1' or a stage output key.")
    path: str = Field(description="Location in the durable store (path or fsspec URL).")
    sha256: str = Field(description="SHA-256 of the file, or of the sorted file listing for a directory.")
    size_bytes: int | None = None


class Environment(_Contract):
    """Where a run executed, so a number can be reproduced on the same software."""

    python: str
    torch: str | None = None
    device: str = Field(description="cpu, cuda:0, ...")
    platform: str
    hostname: str
    nexa_version: str


class CostBreakdown(_Contract):
    """What a run cost and why: compute time at the provider's hourly price plus API usage."""

    provider: str = "local"
    gpu_type: str = "cpu"
    usd_per_hour: float = 0.0
    compute_hours: float = 0.0
    compute_usd: float = 0.0
    api_usd: float = 0.0
    total_usd: float = 0.0


class StageRecord(_Contract):
    """One stage of a pipeline run: whether it ran or was reused, and how long it took."""

    name: str
    status: StageStatus
    seconds: float
    key: str = Field(description="Content-addressed cache key of the stage (hash of code, params, inputs).")
    outputs_sha256: str
    cost_usd: float = Field(0.0, description="What running the stage cost (0 when its output was reused).")
    run_id: str | None = Field(None, description="The stage's own run (None when its output was reused).")


class RunManifest(_Contract):
    """Everything needed to trace a result back to its data, config, code, hardware and cost (v1 §10)."""

    schema_version: int = RUN_MANIFEST_VERSION
    run_id: str
    run_type: str
    status: RunStatus = "running"
    started_at: datetime = Field(default_factory=utcnow)
    ended_at: datetime | None = None
    seed: int | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    config_hash: str | None = None
    code_version: str
    environment: Environment
    dataset_id: str | None = None
    dataset_hash: str | None = None
    teacher_model: str | None = None
    student_model: str | None = None
    gpu_type: str = "cpu"
    provider: str = "local"
    tailscale_ip: str | None = None
    hostname: str
    wandb_run_id: str | None = None
    tokens_trained: int = 0
    cost_estimate_usd_total: float = 0.0
    cost: CostBreakdown = Field(default_factory=CostBreakdown)
    checkpoint_dir_durable: str | None = None
    best_checkpoint: str | None = None
    eval_status: Literal["not_run", "pending", "done", "failed"] = "not_run"
    eval_report: str | None = None
    eval_summary: dict[str, float] = Field(default_factory=dict)
    judge_model_id: str | None = None
    judge_prompt_hash: str | None = None
    inputs: list[ArtifactRef] = Field(default_factory=list)
    outputs: list[ArtifactRef] = Field(default_factory=list)
    stages: list[StageRecord] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict, description="Counters a stage reports (cache hits, calls, ...).")
    parent_run_id: str | None = None
    stage: str | None = Field(None, description="The pipeline stage this run executed, when it is one.")
    error: str | None = None


class FilterRecord(_Contract):
    """A filter applied to a dataset version, with its parameters and how many rows it removed."""

    name: str
    version: str
    params: dict[str, Any] = Field(default_factory=dict)
    removed: int


class DatasetManifest(_Contract):
    """One immutable dataset version: what rows it holds, where they came from, what was removed."""

    schema_version: int = DATASET_MANIFEST_VERSION
    id: str
    version: int = Field(ge=1)
    row_schema: str = Field(description="Name of the row schema, e.g. 'qa' or 'hypothesis'.")
    row_schema_version: int = 1
    rows: int = Field(ge=0)
    content_hash: str
    path: str
    parents: list[str] = Field(default_factory=list, description="Parent versions as 'ID@vN'.")
    filters: list[FilterRecord] = Field(default_factory=list)
    splits: dict[str, int] = Field(default_factory=dict)
    created_by: str | None = Field(default=None, description="run_id of the run that wrote it.")
    created_at: datetime = Field(default_factory=utcnow)
    notes: str = ""

    @property
    def ref(self) -> str:
        return f"{self.id}@v{self.version}"


ModelT = TypeVar("ModelT", bound=BaseModel)

CONTRACTS: dict[str, type[BaseModel]] = {
    "RunManifest": RunManifest,
    "DatasetManifest": DatasetManifest,
    "ArtifactRef": ArtifactRef,
}


def all_contracts() -> dict[str, type[BaseModel]]:
    """Every contract exported to docs/schemas: the manifests above and the files stages pass each other."""
    from nexa.ledger.listings import CapabilityProfile, DatasetListing, PairedDataset, TeacherProfile, TeacherRegistry

    return {**CONTRACTS, "DatasetListing": DatasetListing, "PairedDataset": PairedDataset,
            "CapabilityProfile": CapabilityProfile, "TeacherProfile": TeacherProfile, "TeacherRegistry": TeacherRegistry}


def load_manifest(model: type[ModelT], data: bytes | str | dict, location: str) -> ModelT:
    """Parse and validate a manifest, naming the file and every bad field when it does not fit."""
    try:
        raw = json.loads(data) if isinstance(data, (bytes, str)) else data
    except json.JSONDecodeError as exc:
        raise ManifestValidationError(location, [f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]) from exc
    _check_version(model, raw, location)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ManifestValidationError(location, validation_problems(exc)) from exc


def dump_manifest(manifest: BaseModel) -> bytes:
    """Validate again before writing (assignment may have bypassed nothing, but a copy might have)."""
    type(manifest).model_validate(manifest.model_dump())
    return manifest.model_dump_json(indent=2).encode("utf-8")


def _check_version(model: type[BaseModel], raw: Any, location: str) -> None:
    supported = model.model_fields["schema_version"].default if "schema_version" in model.model_fields else None
    found = raw.get("schema_version") if isinstance(raw, dict) else None
    if supported is not None and isinstance(found, int) and found > supported:
        raise ManifestValidationError(
            location,
            [f"schema_version {found} is newer than this nexa understands ({supported}); upgrade nexacompute"],
        )


def validation_problems(exc: ValidationError) -> list[str]:
    """Each problem of a pydantic error as `field.path: message`, for one-line errors that name the field."""
    return [f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()]

"""Files stages pass to each other, as versioned contracts: ``datasets.json``, ``dataset.json``, ``profile.json``,
``teacher_registry.json``.

A data stage writes a :class:`DatasetListing` (capability → dataset version); a materialize stage writes a
:class:`PairedDataset` (the dataset of teacher answers and the one it answered); the NIWT profile stage writes
a :class:`CapabilityProfile` per capability and a :class:`TeacherProfile` over them; NIWT's registry stage writes
the :class:`TeacherRegistry` (per capability: benchmark, metric, retain fraction) every gate reads. Every reader validates
through these models, so a stage fed the wrong folder fails naming the file and the field. Listings written
before the contract had a version still load (``schema_version`` defaults to 1).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nexa.ledger.lab import DEFAULT_RETAIN_FRACTION
from nexa.ledger.manifests import load_manifest

LISTING_VERSION = 1
HELD_OUT_SPLITS = ("eval", "val", "test")  # what a listing's readers score on is called eval
NIWT_VERIFICATION_ROWS = 50  # training rows per capability a NIWT profile keeps as raw teacher answers (verification)


class ListedDataset(BaseModel):
    """One capability's dataset version in a listing."""

    model_config = ConfigDict(extra="forbid")

    ref: str = Field(description="ID@vN in the lab's dataset registry.")
    content_hash: str | None = None
    rows: int | None = Field(None, ge=0)


class DatasetListing(BaseModel):
    """``datasets.json``: the datasets a data (or feedback) stage made, by capability."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = LISTING_VERSION
    capabilities: dict[str, ListedDataset]
    hypothesis: str | None = Field(None, description="ID@vN of the hypothesis-schema rows, when made.")


class PairedDataset(BaseModel):
    """``dataset.json``: the dataset of teacher answers a materialize stage wrote, and its source."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = LISTING_VERSION
    ref: str = Field(description="ID@vN of the (prompt, teacher answer) dataset.")
    source: str | None = Field(None, description="ID@vN of the dataset whose prompts were answered.")


PROFILE_VERSION = 1


class CapabilityProfile(BaseModel):
    """``profiles/<teacher>/<capability>/profile.json``: what was kept and how small it is."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = PROFILE_VERSION
    teacher: str
    capability: str
    samples: int
    answer_tokens: int
    hidden_size: int
    key_layers: list[int] = Field(description="Teacher layers, most important first.")
    layer_drop: dict[str, float] = Field(description="Answer-loss increase when the layer is skipped.")
    head_importance: list[list[float]] = Field(description="[layer][head] loss increase when the head is masked, max-normalised.")
    important_heads: dict[str, list[int]] = Field(description="Key layer -> its most important heads.")
    explained_variance: dict[str, list[float]] = Field(description="Key layer -> explained-variance ratio per component.")
    teacher_score: float
    benchmark: str
    metric: str
    retain_fraction: float
    bytes_written: int
    raw_activation_bytes: int = Field(description="What storing the key layers' fp32 hidden states would take.")
    fraction_of_raw: float


class ProfiledCapability(BaseModel):
    """One capability in a teacher's ``profile.json``."""

    model_config = ConfigDict(extra="forbid")

    key_layers: list[int]
    samples: int
    bytes: int
    fraction_of_raw: float
    layer_drop: dict[str, float]


class TeacherProfile(BaseModel):
    """``profiles/<teacher>/profile.json``: every capability profiled, teacher scores and storage against raw activations."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = PROFILE_VERSION
    teacher: str
    precision: str = Field(description="How the teacher was loaded (fp32, int8, nf4).")
    teacher_scores: dict[str, float]
    capabilities: dict[str, ProfiledCapability]
    bytes_written: int
    raw_activation_bytes: int
    fraction_of_raw: float
    residual_variance_kept: float


def read_listing(file: Path | str) -> DatasetListing:
    path = Path(file)
    return load_manifest(DatasetListing, path.read_bytes(), str(path))


def read_paired(file: Path | str) -> PairedDataset:
    path = Path(file)
    return load_manifest(PairedDataset, path.read_bytes(), str(path))


def read_capability_profile(file: Path | str) -> CapabilityProfile:
    """A capability's ``profile.json``, validated (naming the file and field when it does not fit)."""
    path = Path(file)
    return load_manifest(CapabilityProfile, path.read_bytes(), str(path))


REGISTRY_VERSION = 1


class CapabilityContract(BaseModel):
    """How one capability of one teacher is measured, and how much of it the student must keep."""

    model_config = ConfigDict(extra="forbid")

    name: str
    benchmark: str
    metric: str
    retain_fraction: float = Field(DEFAULT_RETAIN_FRACTION, gt=0, le=1)


class TeacherEntry(BaseModel):
    """One teacher of the registry (one CSV row)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    parameters: int = Field(ge=1, description="Parameter count, parsed from e.g. '7B' or '350M'.")
    category: str
    best_feature: str
    capabilities: list[CapabilityContract] = Field(min_length=1)

    @field_validator("capabilities")
    @classmethod
    def _unique(cls, value: list[CapabilityContract]) -> list[CapabilityContract]:
        names = [c.name for c in value]
        if len(names) != len(set(names)):
            raise ValueError(f"capabilities repeat: {names}")
        return value


class TeacherRegistry(BaseModel):
    """``teacher_registry.json``: every teacher and its per-capability contracts (benchmark, metric, retain
    fraction), built by NIWT's registry stage and read by every gate, the bundle's included."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = REGISTRY_VERSION
    source: str = Field(description="The CSV this registry was generated from.")
    teachers: list[TeacherEntry]

    def teacher(self, name: str) -> TeacherEntry:
        for entry in self.teachers:
            if entry.name == name:
                return entry
        raise KeyError(f"teacher {name!r} is not in the registry; it has {[t.name for t in self.teachers]}")


def registry_metrics(file: Path, teacher: str | None = None) -> dict[str, dict[str, str]]:
    """``{capability: {"metric", "benchmark"}}`` of one teacher of a ``teacher_registry.json`` (the only one when
    ``teacher`` is not named): what a gate measures each capability with."""
    registry = load_manifest(TeacherRegistry, Path(file).read_bytes(), str(file))
    if teacher is None and len(registry.teachers) != 1:
        raise ValueError(f"{file} lists {len(registry.teachers)} teachers {[t.name for t in registry.teachers]}; name the one "
                         "whose capabilities the bundle carries")
    entry = registry.teachers[0] if teacher is None else registry.teacher(teacher)
    return {c.name: {"metric": c.metric, "benchmark": c.benchmark} for c in entry.capabilities}


def write_contract(file: Path, contract: BaseModel) -> Path:
    """Write a listing as sorted, indented JSON (stable bytes, so stage output hashes are stable)."""
    file.write_text(contract.model_dump_json(indent=2, exclude_none=True))
    return file


def split_by_capability(rows: list[dict], ref: str) -> dict[str, list[dict]]:
    """QA rows grouped by capability, split ``train`` or ``eval``; a capability lacking either is refused."""
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        if not row.get("prompt") or not row.get("answer") or not row.get("capability"):
            raise ValueError(f"{ref} is not QA data with capabilities: a row lacks prompt, answer or capability")
        held_out = row.get("split") in HELD_OUT_SPLITS
        grouped.setdefault(row["capability"], []).append(
            {"prompt": row["prompt"], "answer": row["answer"], "capability": row["capability"],
             "split": "eval" if held_out else "train"})
    for capability, group in grouped.items():
        splits = {r["split"] for r in group}
        if splits != {"train", "eval"}:
            raise ValueError(f"{ref}: capability {capability!r} has no {'eval/val/test' if 'eval' not in splits else 'train'} "
                             f"rows; NIWT needs both (prepare with --splits train=0.8,eval=0.2)")
    return grouped

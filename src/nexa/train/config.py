"""Training configs: one YAML file, validated by pydantic, that says what to train, on what, and how.

A config names the model (an HF config dict, a local pretrained folder, a ``nexa.models``
architecture, or a Llama-style ``size`` shorthand), the data (``ID@vN`` refs or a pack id), the
method (``sft``, ``kd``, ``lora`` and their combinations), and the optimizer, schedule, batch,
sequence length, precision, seed and KD settings. Every problem in a file is reported at once,
naming the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from nexa.ledger.errors import ManifestValidationError
from nexa.train.models import DecoderSize
from nexa.train.sources import is_hub_id
from nexa.train.trainer import KDConfig, OptimConfig

TRAIN_CONFIG_VERSION = 1
METHODS = ("sft", "kd", "lora", "qlora")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(_Section):
    """Where the model comes from: exactly one of ``size``, ``hf_config``, ``pretrained``, ``architecture``."""

    size: DecoderSize | None = Field(None, description="Llama-style decoder sized by a few numbers (built from scratch).")
    hf_config: dict[str, Any] | None = Field(None, description="An HF config dict with `model_type`; vocab/special ids come from the tokenizer.")
    pretrained: Path | None = Field(None, description="A local save_pretrained folder or a hub id (org/name, from the HF cache).")
    architecture: str | None = Field(None, description="A name registered in nexa.models.ARCHITECTURES.")
    architecture_params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _exactly_one(self) -> "ModelSpec":
        given = [n for n in ("size", "hf_config", "pretrained", "architecture") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"model: give exactly one of size, hf_config, pretrained, architecture (got {given or 'none'})")
        if self.hf_config is not None and "model_type" not in self.hf_config:
            raise ValueError("model.hf_config: needs a `model_type` (e.g. llama)")
        return self

    def describe(self) -> str:
        if self.pretrained is not None:
            return f"pretrained:{self.pretrained}"
        if self.architecture is not None:
            return f"nexa.models:{self.architecture}"
        if self.hf_config is not None:
            return f"hf:{self.hf_config['model_type']}"
        return f"llama:{self.size.hidden_size}x{self.size.num_hidden_layers}"


class DataSpec(_Section):
    """Training data: dataset versions to pack, or a pack made by ``nexa pack``."""

    train: list[str] = Field(default_factory=list, description="Dataset refs `ID@vN` (or `ID` for the latest).")
    pack: str | None = Field(None, description="A pack id from `nexa pack` (durable packs/<id>), instead of `train`.")
    tokenizer: Path | None = Field(None, description="tokenizer.json (file or folder); required with `train`.")
    seq_len: int = Field(128, ge=8, le=1_000_000)
    split: str | None = Field("train", description="Keep rows whose `split` column equals this (rows without one are kept).")
    prompt_field: str = "prompt"
    answer_field: str = Field("answer", description="For sequence-level KD this is the teacher's materialized answer.")
    topk_field: str = Field("logprobs", description="Column of stored top-k teacher logprobs for offline KD.")

    @model_validator(mode="after")
    def _source(self) -> "DataSpec":
        if bool(self.train) == bool(self.pack):
            raise ValueError("data: give either `train` (dataset refs) or `pack` (a pack id), not both or neither")
        if self.train and self.tokenizer is None:
            raise ValueError("data.tokenizer: required when data.train lists datasets")
        return self


class TrainKD(KDConfig):
    """KD settings plus where the teacher signal comes from."""

    mode: Literal["logit", "sequence", "offline"] = Field(
        "logit", description="logit: teacher in memory; sequence: SFT on materialized answers; offline: stored top-k logprobs.")
    teacher: Path | None = Field(None, description="Teacher folder (save_pretrained) or hub id; required for mode=logit.")


class LoraSpec(_Section):
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


class TrainOptim(OptimConfig):
    optimizer: str = Field("adamw_torch", description="An HF TrainingArguments `optim` name.")
    gradient_accumulation_steps: int = Field(1, ge=1)
    adam_beta2: float = Field(0.98, gt=0, lt=1)
    save_steps: int = Field(0, ge=0, description="Checkpoint every N steps (0: only at the end).")
    logging_steps: int = Field(0, ge=0, description="0: max_steps // 20.")
    drop_last: bool = Field(True, description="Drop each epoch's ragged last batch, so N processes × B/N see exactly 1 × B's batches.")


class TrackingSpec(_Section):
    wandb: Literal["offline", "online", "disabled"] | None = Field(None, description="None: the lab's wandb_mode (offline by default).")
    project: str = "nexacompute"


class DistributedSpec(_Section):
    """Multi-process settings; FSDP applies only on GPUs (HF TrainingArguments `fsdp`/`fsdp_config`)."""

    nproc: int = Field(1, ge=1, description="Processes to launch with torchrun (`--nproc` overrides).")
    fsdp: str = Field("", description="e.g. 'full_shard auto_wrap'; empty: DDP.")
    fsdp_config: dict[str, Any] = Field(default_factory=dict)


class TrainConfig(_Section):
    """A whole training run; its resolved dump and hash go into the RunManifest."""

    schema_version: int = TRAIN_CONFIG_VERSION
    name: str = "train"
    seed: int = 42
    method: list[Literal["sft", "kd", "lora", "qlora"]] = Field(
        default_factory=lambda: ["sft"], description="e.g. sft, kd+lora; qlora = LoRA on the 4-bit (NF4) base, CUDA only.")
    model: ModelSpec
    data: DataSpec
    optim: TrainOptim = Field(default_factory=TrainOptim)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    kd: TrainKD | None = None
    lora: LoraSpec | None = None
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    distributed: DistributedSpec = Field(default_factory=DistributedSpec)

    @field_validator("method", mode="before")
    @classmethod
    def _split_method(cls, value: Any) -> Any:
        return [m.strip() for m in value.split("+")] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _cross_checks(self) -> "TrainConfig":
        methods = set(self.method)
        problems = []
        if len(methods) != len(self.method):
            problems.append("method: a method is listed twice")
        if {"sft", "kd"} <= methods:
            problems.append("method: sft and kd are alternatives (kd already mixes CE by 1-alpha); use kd or sft")
        if {"lora", "qlora"} <= methods:
            problems.append("method: qlora already is LoRA (on 4-bit weights); list lora or qlora, not both")
        if methods in ({"lora"}, {"qlora"}):
            self.method = ["sft", *methods]
        if "qlora" in methods and self.model.pretrained is None:
            problems.append("method qlora: quantizes a pretrained model's weights; set model.pretrained (a model folder or hub id)")
        if "kd" in methods:
            if self.kd is None:
                self.kd = TrainKD()
            if self.kd.mode == "logit" and self.kd.teacher is None:
                problems.append("kd.teacher: required for kd.mode=logit (a local save_pretrained folder)")
        if methods & {"lora", "qlora"} and self.lora is None:
            self.lora = LoraSpec()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def uses_lora(self) -> bool:
        return "lora" in self.method or "qlora" in self.method

    @property
    def uses_qlora(self) -> bool:
        """LoRA on a base loaded in 4-bit (:mod:`nexa.train.qlora`)."""
        return "qlora" in self.method

    @property
    def kd_mode(self) -> str | None:
        return self.kd.mode if "kd" in self.method and self.kd is not None else None

    def resolved(self) -> dict[str, Any]:
        """The config with every default filled in, as plain JSON (what the manifest records and hashes)."""
        return self.model_dump(mode="json")


def stage_train_config(stage: str, seed: int, size: dict, optim: dict, seq_len: int, datasets: list[str], tokenizer: Path,
                       kd: dict | None = None, teacher: Path | None = None) -> TrainConfig:
    """The :class:`TrainConfig` of a pipeline training stage (teacher, baseline, student KD), validated like a
    ``nexa train`` file: a bad ``size``/``optim``/``kd`` in a pipeline names the stage and every bad field."""
    raw: dict[str, Any] = {"name": stage, "seed": seed, "method": "kd" if kd is not None else "sft", "model": {"size": size},
                           "data": {"train": datasets, "tokenizer": str(tokenizer), "seq_len": seq_len}, "optim": optim}
    if kd is not None:
        raw["kd"] = {**kd, "mode": "logit", "teacher": str(teacher)}
    return validate_train_config(raw, f"pipeline stage {stage!r}")


def load_train_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read and validate a YAML config; relative paths in it resolve against the file's folder."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no training config at {path}; presets live in configs/*.yaml")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ManifestValidationError(str(path), [f"not YAML: {exc}"]) from exc
    if not isinstance(raw, dict):
        raise ManifestValidationError(str(path), ["<root>: expected a mapping of config sections"])
    for dotted, value in (overrides or {}).items():
        set_dotted(raw, dotted, value)
    config = validate_train_config(raw, str(path))
    return _resolve_paths(config, path.parent.resolve())


def validate_train_config(raw: dict[str, Any], location: str) -> TrainConfig:
    """Validate a config dict; one error lists every bad field with its dotted path."""
    found = raw.get("schema_version")
    if isinstance(found, int) and found > TRAIN_CONFIG_VERSION:
        raise ManifestValidationError(location, [f"schema_version {found} is newer than this nexa understands ({TRAIN_CONFIG_VERSION})"])
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()]
        raise ManifestValidationError(location, problems) from exc


def set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested dict, creating sections on the way (used by sweeps and overrides)."""
    *parents, leaf = dotted.split(".")
    node = raw
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ValueError(f"cannot set {dotted}: {key} is not a section")
    node[leaf] = value


def _resolve_paths(config: TrainConfig, base: Path) -> TrainConfig:
    def fix(p: Path | None) -> Path | None:
        if p is None or p.is_absolute() or (not (base / p).exists() and is_hub_id(p)):
            return p  # a hub id (org/name) stays a hub id; resolved through the HF cache when used
        return (base / p).resolve()

    config.data.tokenizer = fix(config.data.tokenizer)
    config.model.pretrained = fix(config.model.pretrained)
    if config.kd is not None:
        config.kd.teacher = fix(config.kd.teacher)
    return config

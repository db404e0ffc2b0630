"""The pipeline file contract: stages, what each uses, its parameters and the stages it needs."""

from __future__ import annotations

import importlib
import importlib.resources
from pathlib import Path
from typing import Any, Callable

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nexa.ledger import Lab, ManifestValidationError
from nexa.ledger.store import atomic_write_bytes

PIPELINE_VERSION = 1


class StageSpec(BaseModel):
    """One stage: a function ``module:function`` called with ``with`` as keyword arguments."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    uses: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", description="module.path:function")
    params: dict[str, Any] = Field(default_factory=dict, alias="with")
    needs: list[str] = Field(default_factory=list, description="Stages whose outputs this one reads.")
    run_type: str | None = Field(None, description="run_type of the stage's RunManifest (default: its name).")

    def resolve(self) -> Callable[..., dict]:
        module_name, func_name = self.uses.split(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ValueError(f"stage {self.name!r}: cannot import {module_name!r} named in `uses`: {exc}") from exc
        if not hasattr(module, func_name):
            raise ValueError(f"stage {self.name!r}: {module_name} has no function {func_name!r}")
        return getattr(module, func_name)


class PipelineSpec(BaseModel):
    """A pipeline file: a name, a seed and stages that form a DAG (checked on load)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = PIPELINE_VERSION
    name: str
    seed: int = 42
    stages: list[StageSpec]

    @model_validator(mode="after")
    def _check_dag(self) -> "PipelineSpec":
        seen: set[str] = set()
        for stage in self.stages:
            if stage.name in seen:
                raise ValueError(f"stage name {stage.name!r} is used twice")
            unknown = [n for n in stage.needs if n not in seen]
            if unknown:
                raise ValueError(
                    f"stage {stage.name!r} needs {unknown}, which are not defined before it "
                    "(stages must be listed after the stages they need)"
                )
            seen.add(stage.name)
        return self

    def stage(self, name: str) -> StageSpec:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"no stage {name!r}; stages are {[s.name for s in self.stages]}")


def load_pipeline(path: str | Path) -> PipelineSpec:
    """Read and validate a pipeline file; every problem is reported with its field path."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"pipeline file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ManifestValidationError(str(path), [f"not valid YAML: {exc}"]) from exc
    try:
        return PipelineSpec.model_validate(raw)
    except ValidationError as exc:
        raise ManifestValidationError(
            str(path), [f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors()]
        ) from exc


def builtin_pipeline_path(name: str) -> Path:
    return Path(str(importlib.resources.files("nexa.pipeline") / "builtin" / f"{name}.yaml"))


def export_demo_tokenizer(lab: Lab, outputs: dict[str, Path]) -> list[Path]:
    """Copy the golden run's tokenizer (``tokenizer.json`` and its declared special tokens) to the lab's root, where
    the presets in ``configs/`` and the commands in ``docs/`` find it (``nexa-demo/tokenizer.json``) after ``make demo``.
    The teacher's weights are not exported: verification deletes them, and that is the point of the demo."""
    written = []
    for source in sorted(outputs["tokenizer"].glob("tokenizer*.json")) if "tokenizer" in outputs else []:
        atomic_write_bytes(lab.root / source.name, source.read_bytes())
        written.append(lab.root / source.name)
    return written


def install_builtin_pipelines(lab: Lab) -> list[Path]:
    """Copy the shipped pipelines into ``<lab>/pipelines`` unless the lab already has its own copy."""
    written = []
    for source in sorted(builtin_pipeline_path("golden").parent.glob("*.yaml")):
        target = lab.root / "pipelines" / source.name
        if not target.exists():
            atomic_write_bytes(target, source.read_bytes())
            written.append(target)
    return written

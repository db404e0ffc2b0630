"""A lab: the folder that holds the ledger (``runs/``, ``registry/``), its config and its storage tiers.

Tier locations follow the spec's environment variables, so the same code writes to ``/scratch`` and
a mounted bucket on a rented node and to ``.nexa/`` on a laptop.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nexa.ledger.errors import ArtifactNotFoundError, ManifestValidationError
from nexa.ledger.store import DurableStore, atomic_write_bytes

# libyaml's safe loader/dumper when PyYAML has it (~10x the pure-Python one): the lab's config and registry are
# read by every command, and the registry grows with every version.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

LAB_FILE = "nexa.yaml"
LAB_CONFIG_VERSION = 1


# The retention gate's default, the one literal: a lab's nexa.yaml overrides it, and every gate, registry and
# contract that is not told otherwise uses the lab's value (or this one outside a lab).
DEFAULT_RETAIN_FRACTION = 0.97


class LabConfig(BaseModel):
    """``nexa.yaml``: a lab's name, its defaults, and prices that extend the built-in table."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = LAB_CONFIG_VERSION
    name: str = "nexa-lab"
    retain_fraction: float = Field(DEFAULT_RETAIN_FRACTION, gt=0, le=1, description="Default retention gate per capability.")
    provider: str = Field("local", description="Where compute runs; selects the hourly price.")
    prices: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra prices: {'compute': {provider: {gpu_type: usd_per_hour}}, "
        "'models': {model: {input_per_mtok, output_per_mtok}}}.",
    )
    wandb_mode: str = Field("offline", description="offline | online | disabled")


def default_retain_fraction(lab_dir: Path) -> float:
    """The retention gate's default: the lab's ``nexa.yaml`` when ``lab_dir`` is in a lab, else LabConfig's."""
    here = Path(lab_dir).resolve()
    in_a_lab = any((folder / LAB_FILE).exists() for folder in (here, *here.parents))
    return Lab.find(here).config.retain_fraction if in_a_lab else LabConfig().retain_fraction


class Lab:
    """Paths and config of one lab; every stage and command resolves its locations through this."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.config = self._load_config()

    # -- creation and discovery ---------------------------------------------------------------
    @classmethod
    def init(cls, root: str | Path, name: str | None = None) -> "Lab":
        """Create the lab layout; an existing lab is left as it is (idempotent)."""
        root = Path(root).resolve()
        for sub in ("runs/manifests", "runs/logs", "registry", "pipelines", ".nexa/scratch", ".nexa/durable"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        config_path = root / LAB_FILE
        if not config_path.exists():
            config = LabConfig(name=name or root.name)
            atomic_write_bytes(config_path, yaml.safe_dump(config.model_dump(), sort_keys=False).encode())
        gitignore = root / ".gitignore"
        if not gitignore.exists():
            atomic_write_bytes(gitignore, b".nexa/\nwandb/\n*.parquet\n*.safetensors\n")
        return cls(root)

    @classmethod
    def find(cls, start: str | Path | None = None) -> "Lab":
        """The lab containing ``start`` (default: the current folder), looking upwards like git."""
        here = Path(start or os.getcwd()).resolve()
        for folder in (here, *here.parents):
            if (folder / LAB_FILE).exists():
                return cls(folder)
        raise ArtifactNotFoundError(f"no {LAB_FILE} in {here} or any parent folder; run `nexa init` to create a lab")

    def _load_config(self) -> LabConfig:
        path = self.root / LAB_FILE
        if not path.exists():
            raise ArtifactNotFoundError(f"{path} does not exist; run `nexa init {self.root}`")
        try:
            return LabConfig.model_validate(yaml.load(path.read_text(), Loader=YAML_LOADER) or {})
        except ValidationError as exc:
            problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
            raise ManifestValidationError(str(path), problems) from exc

    # -- tiers --------------------------------------------------------------------------------
    @property
    def scratch(self) -> Path:
        path = Path(os.environ.get("NEXA_SCRATCH") or self.root / ".nexa" / "scratch")
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def durable_url(self) -> str:
        return os.environ.get("NEXA_DURABLE") or str(self.root / ".nexa" / "durable")

    def durable(self) -> DurableStore:
        return DurableStore(self.durable_url)

    def checkpoint_dirs(self, run_id: str) -> tuple[Path, str]:
        """Scratch and durable checkpoint folders of a run, honouring the spec's variables."""
        scratch = Path(os.environ.get("NEXA_CHECKPOINT_DIR") or self.scratch / "checkpoints" / run_id)
        durable = os.environ.get("NEXA_DURABLE_CHECKPOINT_DIR") or f"checkpoints/{run_id}"
        return scratch, durable

    # -- ledger -------------------------------------------------------------------------------
    @property
    def manifests_dir(self) -> Path:
        return self.root / "runs" / "manifests"

    @property
    def logs_dir(self) -> Path:
        return self.root / "runs" / "logs"

    @property
    def registry_dir(self) -> Path:
        return self.root / "registry"

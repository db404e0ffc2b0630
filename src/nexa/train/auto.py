"""Nexa Auto's decisions, apart from its questions: what model this is, which methods fit this machine,
what batch size, how long and how much, the TrainConfig it resolves to, and the jobs that run it.

The interactive command (:mod:`nexa.train.auto_commands`) only asks and prints; everything it shows
or runs is computed here. The jobs are the lab's own commands (``nexa data prepare``, ``nexa train``,
``nexa eval run``, ``nexa infra launch``) started as child processes whose environment alone carries
the session's tokens: this process's environment is never changed and no token is on a command line.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from nexa.infra.hardware import Hardware
from nexa.ledger import CostBreakdown, Lab
from nexa.ledger.hashing import sha256_json
from nexa.ledger.store import atomic_write_bytes
from nexa.train.auto_niwt import NiwtPlan
from nexa.train.qlora import unavailable_reason as qlora_unavailable_reason

if TYPE_CHECKING:  # the train config pulls in the HF Trainer: imported where a config is built
    from nexa.train.config import TrainConfig

AUTO_METHODS = ("lora", "qlora", "sft", "kd", "niwt")
LEARNING_RATES = {"lora": 2e-4, "qlora": 2e-4, "sft": 2e-5, "kd": 2e-5}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
# Dense bf16 peak TFLOP/s of common GPUs; the estimate assumes a third of it is reached.
GPU_TFLOPS = {"H200": 989, "H100": 989, "GH200": 989, "A100": 312, "A10": 125, "A40": 150, "L4": 121, "A4000": 77}
CPU_FLOPS_PER_CORE = 5e9
STARTUP_S = 20.0


class AutoError(ValueError):
    """A choice that cannot be used; the message says why and what to choose instead."""


class AutoAnswers(BaseModel):
    """Every answer Nexa Auto needs; each field is also a command-line flag."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    model: str = Field(description="Local model folder (config.json, weights, tokenizer.json) or a hub id in the HF cache.")
    dataset: str = Field(description="Dataset version ID@vN in the lab's registry.")
    method: str = Field(description="lora, qlora (CUDA GPU), sft, kd or niwt.")
    teacher: str | None = Field(None, description="Teacher model folder for kd and niwt.")
    batch_size: int = Field(ge=1)
    steps: int = Field(ge=1)
    seq_len: int = Field(128, ge=8)
    learning_rate: float | None = Field(None, gt=0)
    name: str = "auto"
    wandb: str | None = Field(None, description="offline, online or disabled (default: the lab's).")


@dataclass
class ModelInfo:
    """A usable model: its folder and the shape numbers the estimates need."""

    ref: str
    path: Path
    parameters: int
    hidden_size: int
    layers: int
    vocab_size: int


@dataclass
class MethodOption:
    name: str
    label: str
    runnable: bool
    note: str
    batch_size: int


# -- the model ----------------------------------------------------------------------------------
def inspect_model(ref: str) -> ModelInfo:
    """A local folder or a hub id already in the HF cache, checked to be a model this lab can train."""
    path = Path(ref).expanduser()
    if not path.exists():
        if ref.startswith((".", "/", "~")) or ref.count("/") != 1:
            raise AutoError(f"{ref}: no such folder, and not a hub id (owner/name)")
        path = _from_hub_cache(ref)
    if not path.is_dir():
        raise AutoError(f"{ref} is a file, not a model folder (expected config.json, weights and tokenizer.json)")
    missing = [name for name, ok in (("config.json", (path / "config.json").is_file()),
                                     ("weights (*.safetensors)", any((path / w).exists() for w in WEIGHT_FILES)),
                                     ("tokenizer.json", (path / "tokenizer.json").is_file())) if not ok]
    if missing:
        raise AutoError(f"{path} is not a model folder: it has no {', '.join(missing)}")
    try:
        config = json.loads((path / "config.json").read_text())
    except json.JSONDecodeError as exc:
        raise AutoError(f"{path}/config.json is not JSON ({exc})") from exc
    hidden = int(config.get("hidden_size") or config.get("n_embd") or config.get("d_model") or 0)
    layers = int(config.get("num_hidden_layers") or config.get("n_layer") or 0)
    vocab = int(config.get("vocab_size") or 0)
    if not (hidden and layers and vocab):
        raise AutoError(f"{path}/config.json lacks hidden_size, num_hidden_layers or vocab_size; is it a causal LM?")
    return ModelInfo(ref, path.resolve(), _parameter_count(path) or _estimated_parameters(config, hidden, layers, vocab),
                     hidden, layers, vocab)


def _from_hub_cache(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except LocalEntryNotFoundError as exc:
        raise AutoError(f"hub model {repo_id} is not in the local HF cache (HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')}); "
                        "download it first (with HF_TOKEN from `nexa session add hf`) or give a local folder") from exc


def _parameter_count(path: Path) -> int:
    """Exact count from the safetensors headers (no weights are read); 0 when there are none."""
    total = 0
    for file in sorted(path.glob("*.safetensors")):
        with open(file, "rb") as handle:
            header = json.loads(handle.read(struct.unpack("<Q", handle.read(8))[0]))
        total += sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")
    return total


def _estimated_parameters(config: dict, hidden: int, layers: int, vocab: int) -> int:
    inner = int(config.get("intermediate_size") or 4 * hidden)
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings", True) else 2)
    return embeddings + layers * (4 * hidden * hidden + 3 * hidden * inner)


def find_models(lab: Lab) -> list[Path]:
    """Models already in the lab: trained checkpoints (durable ``models/``) and stage outputs."""
    root = Path(lab.durable_url)
    if "://" in lab.durable_url or not root.exists():
        return []
    candidates = sorted(p for p in (root / "models").glob("*") if p.is_dir())
    candidates += sorted(root.glob("stages/*/*/model"))
    usable = []
    for path in candidates:
        try:
            inspect_model(str(path))
        except AutoError:
            continue
        usable.append(path)
    return usable


# -- what fits ----------------------------------------------------------------------------------
def memory_budget_gb(hardware: Hardware) -> float:
    """What training may use: 90% of the first GPU's memory, or half the system memory on CPU."""
    if hardware.device == "cuda" and hardware.gpu_memory_gb:
        return hardware.gpu_memory_gb * 0.9
    return (hardware.memory_gb or 8.0) * 0.5


def batch_size_for(hardware: Hardware, info: ModelInfo, method: str, seq_len: int) -> int:
    """The largest power of two whose estimated memory fits (0: not even one sample fits).

    Static memory per parameter: 16 bytes for full training with AdamW (weights, grads, two
    moments in fp32), 4 for LoRA (frozen fp32 weights), 0.6 for QLoRA (4-bit weights);
    activations per sample ~ 34 bytes x seq_len x hidden x layers in 16-bit (68 in fp32).
    """
    per_param = {"sft": 16.0, "kd": 18.0, "lora": 4.0, "qlora": 0.6}.get(method, 16.0)
    bytes_per_act = 34 if hardware.device == "cuda" else 68
    free = memory_budget_gb(hardware) * 2**30 - info.parameters * per_param
    per_sample = bytes_per_act * seq_len * info.hidden_size * info.layers
    if free < per_sample:
        return 0
    cap = 64 if hardware.device == "cuda" else 16
    return min(cap, 2 ** int(math.log2(free / per_sample)))


def method_options(hardware: Hardware, info: ModelInfo, seq_len: int) -> list[MethodOption]:
    """Every method with whether it can run here and the batch size that fits."""
    options = []
    for name, label in (("lora", "LoRA adapters (PEFT): only the adapters train"),
                        ("qlora", "QLoRA: LoRA on 4-bit weights"),
                        ("sft", "full fine-tuning (SFT)"),
                        ("kd", "logit distillation (KD) from a teacher with the same tokenizer"),
                        ("niwt", "NIWT: profile a teacher, synthesize and distill a student")):
        batch = batch_size_for(hardware, info, name, seq_len)
        runnable, note = batch > 0, f"batch {batch} fits" if batch else "does not fit in memory"
        if name == "qlora" and qlora_unavailable_reason(hardware):
            runnable, note = False, qlora_unavailable_reason(hardware)
        elif name == "niwt" and batch:
            note = f"batch {batch} fits; needs a teacher model (--teacher)"
        options.append(MethodOption(name, label, runnable, note, batch))
    return options


def suggest_method(options: list[MethodOption], info: ModelInfo) -> str:
    """Full SFT for small models (< 200M parameters) where it fits, else LoRA, else whatever runs."""
    order = ("sft", "lora") if info.parameters < 200_000_000 else ("lora", "sft")
    runnable = {o.name for o in options if o.runnable}
    for name in order:
        if name in runnable:
            return name
    raise AutoError(f"no training method fits this machine for a {info.parameters / 1e6:.0f}M-parameter model; "
                    "choose a smaller model or a bigger GPU (--backend infra)")


# -- time and money -----------------------------------------------------------------------------
def estimate_seconds(hardware: Hardware, info: ModelInfo, method: str, steps: int, batch_size: int, seq_len: int,
                     gpu_type: str | None = None) -> float:
    """Training FLOPs (6 per parameter per token; 4 for adapters) at a third of peak, plus start-up."""
    tokens = steps * batch_size * seq_len
    flops = (4 if method in ("lora", "qlora") else 6) * info.parameters * tokens
    kind = gpu_type or (hardware.gpu_type if hardware.device == "cuda" else "cpu")
    if kind == "cpu":
        speed = hardware.cpu_count * CPU_FLOPS_PER_CORE
    else:
        name, _, count = kind.partition("x")
        speed = GPU_TFLOPS.get(name.upper(), 100) * 1e12 / 3 * int(count or 1)
    return STARTUP_S + flops / speed


def estimate_cost(lab: Lab, provider: str, gpu_type: str, seconds: float) -> CostBreakdown:
    from nexa.infra.cost import PriceTable

    return PriceTable.from_lab(lab).compute_cost(provider, gpu_type, seconds)


def check_budget(budget_usd: float | None, cost: CostBreakdown) -> None:
    """Refuse a plan whose estimate is above the budget (None: no cap)."""
    if budget_usd is not None and cost.total_usd > budget_usd:
        raise AutoError(f"the estimate is ${cost.total_usd:.2f} ({cost.compute_hours:.2f} h of {cost.gpu_type} at "
                        f"{cost.provider}, ${cost.usd_per_hour:.2f}/h), above your budget of ${budget_usd:.2f}; "
                        "raise --budget, lower --steps or --batch-size, or pick a cheaper GPU")


# -- the config ---------------------------------------------------------------------------------
def build_config(answers: AutoAnswers, info: ModelInfo) -> "TrainConfig":
    """The TrainConfig these answers mean, validated by the train layer's own model."""
    from nexa.train.config import validate_train_config

    if answers.method not in ("lora", "qlora", "sft", "kd"):
        raise AutoError(f"method {answers.method!r} is not a TrainConfig method; choose lora, qlora, sft or kd")
    raw: dict[str, Any] = {
        "name": answers.name, "seed": 42, "method": f"sft+{answers.method}" if "lora" in answers.method else answers.method,
        "model": {"pretrained": str(info.path)},
        "data": {"train": [answers.dataset], "tokenizer": str(info.path), "seq_len": answers.seq_len, "split": "train"},
        "optim": {"max_steps": answers.steps, "batch_size": answers.batch_size,
                  "learning_rate": answers.learning_rate or LEARNING_RATES[answers.method],
                  "warmup_steps": min(answers.steps // 10, 100)},
    }
    if answers.method == "kd":
        if not answers.teacher:
            raise AutoError("kd needs a teacher model folder (--teacher)")
        raw["kd"] = {"mode": "logit", "teacher": str(inspect_model(answers.teacher).path)}
    if answers.wandb:
        raw["tracking"] = {"wandb": answers.wandb}
    return validate_train_config(raw, "nexa auto")


def config_yaml(config: "TrainConfig | NiwtPlan") -> str:
    """What the plan will run, as the file it is written to: a TrainConfig or a NIWT pipeline."""
    if isinstance(config, NiwtPlan):
        return config.yaml()
    return yaml.safe_dump(config.resolved(), sort_keys=False)


def check_runs_here(hardware: Hardware, config: "TrainConfig | NiwtPlan", backend: str) -> None:
    """Refuse, before anything is written, a QLoRA plan (e.g. from --config) that this machine cannot run locally."""
    reason = qlora_unavailable_reason(hardware)
    if backend == "local" and plan_shape(config)[0] == "qlora" and reason:
        raise AutoError(f"{reason}; use method lora here, or --backend infra for a cloud GPU")


def plan_shape(config: "TrainConfig | NiwtPlan") -> tuple[str, int, int, int]:
    """(method, steps, batch size, sequence length) of a plan, for its time and cost estimate."""
    if isinstance(config, NiwtPlan):
        return "niwt", config.steps, config.batch_size, 128
    method = ("qlora" if config.uses_qlora else "lora") if config.uses_lora else ("kd" if "kd" in config.method else "sft")
    return method, config.optim.max_steps, config.optim.batch_size, config.data.seq_len


def write_config(lab: Lab, config: "TrainConfig | NiwtPlan") -> Path:
    """``<lab>/configs/auto/<name>-<hash>.yaml``, written atomically (same plan, same file)."""
    if isinstance(config, NiwtPlan):
        from nexa.train.auto_niwt import write_pipeline

        return write_pipeline(lab, config)
    path = lab.root / "configs" / "auto" / f"{config.name}-{sha256_json(config.resolved())[:10]}.yaml"
    atomic_write_bytes(path, config_yaml(config).encode())
    return path


def load_config_file(path: Path) -> "TrainConfig":
    from nexa.train.config import load_train_config

    return load_train_config(path)


def dataset_rows(lab: Lab, ref: str) -> int:
    from nexa.ledger.datasets import read_dataset_manifest

    return read_dataset_manifest(lab, ref).rows


# -- the jobs -----------------------------------------------------------------------------------
def infra_available() -> bool:
    """Whether this install has ``nexa infra launch`` (the infra layer's launcher module)."""
    return importlib.util.find_spec("nexa.infra.launch") is not None


def nexa_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "nexa.cli", *args]


def run_job(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run a ``nexa ... --json`` child: its progress goes to this terminal, its JSON result comes back."""
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    lines = [line for line in done.stdout.decode(errors="replace").splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise JobError(f"`nexa {command[3]}` exited with code {done.returncode}; its messages are above", done.returncode)
    return json.loads(lines[-1])


class JobError(RuntimeError):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def prepare_job(lab: Lab, file: Path, schema: str, dataset_id: str) -> list[str]:
    return nexa_command("data", "prepare", "--input", str(file), "--schema", schema, "--dataset", dataset_id,
                        "--lab", str(lab.root), "--json")


def train_job(lab: Lab, config_file: Path) -> list[str]:
    return nexa_command("train", "--config", str(config_file), "--lab", str(lab.root), "--json")


def eval_job(lab: Lab, model_path: str, dataset: str, max_new_tokens: int = 8) -> list[str]:
    return nexa_command("eval", "run", "--model", model_path, "--tasks", dataset, "--judges", "exact", "--role", "student",
                        "--max-new-tokens", str(max_new_tokens), "--usd-per-hour", "0", "--lab", str(lab.root), "--json")


def infra_job(config_file: Path, gpus: str, budget_usd: float | None) -> list[str]:
    budget = ["--budget", str(budget_usd)] if budget_usd is not None else []
    return nexa_command("infra", "launch", "--config", str(config_file), "--backend", "skypilot", "--gpus", gpus, *budget, "--json")

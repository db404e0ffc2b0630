"""Where a named model comes from: a local Hugging Face folder or a hub id resolved through the HF cache.

Every place a model is named (train configs, ``kd.teacher``, NIWT profile, ``distill materialize
--teacher``, eval, bundle) goes through :func:`resolve_model_source`, so a hub id works the same
everywhere and offline use fails with one line naming the id and ``HF_HUB_OFFLINE``. The families the
lab trains, profiles, synthesizes and bundles are checked here too; anything else is refused with the
supported list.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

SUPPORTED_FAMILIES = ("llama", "qwen2", "mistral", "gemma")
STUDENT_ARCHITECTURES = ("mamba", "nexa_deq")  # nexa.models students (model.architecture: ssm | deq) load back too
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_DOWNLOAD_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]


class ModelSourceError(ValueError):
    """A model name that does not lead to a usable model; the message names the fix."""


def is_hub_id(name: str | Path) -> bool:
    return not Path(name).exists() and bool(_HUB_ID.match(str(name)))


def resolve_model_source(name: str | Path, field: str) -> Path:
    """The local folder of ``name``: itself when it exists, else the HF-cache snapshot of the hub id."""
    path = Path(name)
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelSourceError(f"{field}: {path} has no config.json; expected a folder written by save_pretrained() or a hub id")
        return path
    if not _HUB_ID.match(str(name)):
        raise ModelSourceError(f"{field}: {name} is neither a local model folder nor a hub id (org/name)")
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    offline = bool(constants.HF_HUB_OFFLINE)
    try:
        return Path(snapshot_download(str(name), local_files_only=offline, allow_patterns=_DOWNLOAD_PATTERNS))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:
        raise ModelSourceError(f"{field}: hub model {name!r} is not in the HF cache and HF_HUB_OFFLINE=1 forbids downloading it; "
                               f"download it once online (hf download {name}) or unset HF_HUB_OFFLINE") from exc


def model_family(folder: Path, field: str) -> str:
    """The folder's ``model_type`` when the lab supports it; else a ModelSourceError listing the supported ones."""
    config = json.loads((Path(folder) / "config.json").read_text())
    return check_family(config.get("model_type"), f"{field} ({folder})")


def check_family(model_type: str | None, where: str) -> str:
    if model_type not in SUPPORTED_FAMILIES + STUDENT_ARCHITECTURES:
        raise ModelSourceError(f"{where}: model family {model_type!r} is not supported; supported: {', '.join(SUPPORTED_FAMILIES)} "
                               f"(and the lab's own {', '.join(STUDENT_ARCHITECTURES)} students)")
    return model_type


def open_model_source(name: str | Path, field: str) -> Path:
    """A resolved folder of a supported family that carries its own tokenizer."""
    folder = resolve_model_source(name, field)
    model_family(folder, field)
    if not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        raise ModelSourceError(f"{field}: {folder} has no tokenizer; save the model's tokenizer beside its weights "
                               "(tokenizer.save_pretrained(folder))")
    return folder


def load_causal_lm(name: str | Path, field: str, **kwargs):
    """``AutoModelForCausalLM`` from a resolved, family-checked folder (local files only); ``kwargs`` go to from_pretrained."""
    from transformers import AutoModelForCausalLM

    import nexa.models  # noqa: F401  (registers the deq student with the Auto classes)

    folder = open_model_source(name, field)
    return AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, **kwargs)

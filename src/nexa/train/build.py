"""Building what a config names: the model to train (from a size, an HF config, a local folder or a
``nexa.models`` architecture), LoRA adapters on it, the frozen teacher for logit KD, and saving the result.
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from nexa.train.config import TrainConfig
from nexa.train.models import build_model
from nexa.train.tokenizer import BOS_ID, EOS_ID, PAD_ID, load_tokenizer


def build_model_for(config: TrainConfig, pack_dir: Path) -> tuple[PreTrainedModel, Path]:
    """The model to train (LoRA-wrapped when the method asks) and the tokenizer file it pairs with."""
    tokenizer_file = pack_dir / "tokenizer.json"
    vocab = load_tokenizer(tokenizer_file).get_vocab_size()
    model = base_model(config, vocab)
    if config.uses_lora:
        model = add_lora(model, config)
    return model, tokenizer_file


def base_model(config: TrainConfig, vocab_size: int) -> PreTrainedModel:
    spec = config.model
    if spec.size is not None:
        return build_model(spec.size, vocab_size, config.seed)
    if spec.hf_config is not None:
        params = {k: v for k, v in spec.hf_config.items() if k != "model_type"}
        params.setdefault("vocab_size", vocab_size)
        params.update(pad_token_id=PAD_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID)
        torch.manual_seed(config.seed)
        return AutoModelForCausalLM.from_config(AutoConfig.for_model(spec.hf_config["model_type"], **params))
    if spec.pretrained is not None:
        model = load_local(spec.pretrained, "model.pretrained")
        if model.config.vocab_size < vocab_size:
            raise ValueError(f"model.pretrained {spec.pretrained} has a vocabulary of {model.config.vocab_size} but the "
                             f"tokenizer has {vocab_size} tokens; pack with the tokenizer the model was trained with")
        return model
    return _architecture(spec.architecture, vocab_size, config.seed, spec.architecture_params)


def _architecture(name: str, vocab_size: int, seed: int, params: dict) -> PreTrainedModel:
    """A ``nexa.models`` architecture: the package exposes ``ARCHITECTURES = {name: builder(vocab_size, **params)}``."""
    registry = getattr(importlib.import_module("nexa.models"), "ARCHITECTURES", None)
    if not registry:
        raise ValueError(f"model.architecture {name!r}: nexa.models registers no architectures yet "
                         "(it must expose ARCHITECTURES = {name: builder}); use model.size or model.hf_config")
    if name not in registry:
        raise ValueError(f"model.architecture {name!r} is not registered; known: {sorted(registry)}")
    torch.manual_seed(seed)
    return registry[name](vocab_size=vocab_size, **params)


def load_local(path: Path, field: str) -> PreTrainedModel:
    """A model from a local save_pretrained folder; a clear error when it is not one (no hub lookups)."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{field}: {path} has no config.json; expected a folder written by save_pretrained()")
    import nexa.models  # noqa: F401  (registers the nexa.models architectures with the Auto classes)

    return AutoModelForCausalLM.from_pretrained(path, local_files_only=True)


def add_lora(model: PreTrainedModel, config: TrainConfig) -> PreTrainedModel:
    """Wrap with PEFT LoRA adapters; only adapter weights train."""
    from peft import LoraConfig, get_peft_model

    lora = config.lora
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in lora.target_modules if m not in present]
    if missing:
        raise ValueError(f"lora.target_modules {missing} are not modules of this model; it has e.g. {sorted(present)[:12]}")
    peft_config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                             target_modules=list(lora.target_modules), task_type="CAUSAL_LM")
    return get_peft_model(model, peft_config)


def build_teacher(config: TrainConfig) -> PreTrainedModel:
    teacher = load_local(config.kd.teacher, "kd.teacher")
    teacher.eval().requires_grad_(False)
    return teacher


def save_trained(model: PreTrainedModel, config: TrainConfig, folder: Path, tokenizer_file: Path) -> None:
    """save_pretrained weights + tokenizer.json; a LoRA run also keeps its adapter and saves merged weights."""
    shutil.rmtree(folder, ignore_errors=True)
    if config.uses_lora:
        model.save_pretrained(folder / "adapter")
        model = model.merge_and_unload()
    model.save_pretrained(folder, safe_serialization=True)
    shutil.copyfile(tokenizer_file, folder / "tokenizer.json")

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
from nexa.train.sources import check_family, load_causal_lm
from nexa.train.tokenizer import ADDED_PAD, copy_tokenizer_files, load_hf_tokenizer, special_ids


def build_model_for(config: TrainConfig, pack_dir: Path) -> tuple[PreTrainedModel, Path]:
    """The model to train (LoRA-wrapped when the method asks; on a 4-bit base for QLoRA) and its tokenizer file."""
    tokenizer_file = pack_dir / "tokenizer.json"
    model = base_model(config, load_hf_tokenizer(tokenizer_file), quantized=config.uses_qlora)
    if config.uses_qlora:
        from nexa.train.qlora import prepare_for_training

        model = prepare_for_training(model)
    if config.uses_lora:
        model = add_lora(model, config)
    return model, tokenizer_file


def base_model(config: TrainConfig, tokenizer, quantized: bool = False) -> PreTrainedModel:
    """The model a config names, its special ids set to the tokenizer's own (``quantized``: a pretrained one in 4-bit)."""
    spec, vocab_size, specials = config.model, len(tokenizer), special_ids(tokenizer)
    if spec.size is not None:
        return build_model(spec.size, vocab_size, config.seed, specials)
    if spec.hf_config is not None:
        check_family(spec.hf_config["model_type"], "model.hf_config.model_type")
        params = {k: v for k, v in spec.hf_config.items() if k != "model_type"}
        params.setdefault("vocab_size", vocab_size)
        params.update(specials.as_config())
        torch.manual_seed(config.seed)
        return AutoModelForCausalLM.from_config(AutoConfig.for_model(spec.hf_config["model_type"], **params))
    if spec.pretrained is not None:
        kwargs = {}
        if quantized:
            from nexa.train.qlora import load_kwargs

            kwargs = load_kwargs()
        return fit_to_tokenizer(load_causal_lm(spec.pretrained, "model.pretrained", **kwargs), tokenizer,
                                f"model.pretrained {spec.pretrained}")
    model = _architecture(spec.architecture, vocab_size, config.seed, spec.architecture_params)
    model.config.update(specials.as_config())
    if model.generation_config is not None:
        model.generation_config.update(**specials.as_config())
    return model


def fit_to_tokenizer(model: PreTrainedModel, tokenizer, where: str) -> PreTrainedModel:
    """Use the tokenizer's special ids; grow the embeddings only for a PAD the lab appended."""
    if model.config.vocab_size < len(tokenizer):
        if tokenizer.pad_token != ADDED_PAD or model.config.vocab_size != len(tokenizer) - 1:
            raise ValueError(f"{where} has a vocabulary of {model.config.vocab_size} but the tokenizer has {len(tokenizer)} "
                             "tokens; pack with the tokenizer the model was trained with")
        model.resize_token_embeddings(len(tokenizer))
    model.config.update(special_ids(tokenizer).as_config())
    if model.generation_config is not None:
        model.generation_config.update(**special_ids(tokenizer).as_config())
    return model


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
    teacher = load_causal_lm(config.kd.teacher, "kd.teacher")
    teacher.eval().requires_grad_(False)
    return teacher


def save_trained(model: PreTrainedModel, config: TrainConfig, folder: Path, tokenizer_file: Path) -> None:
    """save_pretrained weights + the tokenizer files; a LoRA run also keeps its adapter and saves merged weights.

    QLoRA merges its adapter into the base loaded again in full precision, not into the 4-bit weights.
    """
    shutil.rmtree(folder, ignore_errors=True)
    if config.uses_lora:
        model.save_pretrained(folder / "adapter")
    if config.uses_qlora:
        from nexa.train.qlora import merged_full_precision

        model = merged_full_precision(folder / "adapter", base_model(config, load_hf_tokenizer(tokenizer_file)))
    elif config.uses_lora:
        model = model.merge_and_unload()
    model.save_pretrained(folder, safe_serialization=True)
    copy_tokenizer_files(tokenizer_file, folder)

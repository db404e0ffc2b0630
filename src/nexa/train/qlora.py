"""QLoRA: LoRA adapters trained on a base model loaded in 4-bit (NF4, double quantization, bf16 compute).

The weights are quantized by bitsandbytes, which runs on CUDA GPUs only, so a QLoRA config is refused
before anything is written on a machine without one (:func:`unavailable_reason` is the one place that
decides, for ``nexa train`` and ``nexa auto`` alike). The trained adapter is merged into the base
model loaded again in full precision, so the saved checkpoint needs no bitsandbytes to run or evaluate.
"""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import BitsAndBytesConfig, PreTrainedModel

    from nexa.infra.hardware import Hardware

INSTALL_HINT = "pip install 'nexacompute[qlora]'"


class QLoRAUnavailable(ValueError):
    """QLoRA was asked for where it cannot run (no CUDA GPU, or no bitsandbytes)."""


def unavailable_reason(hardware: "Hardware") -> str | None:
    """Why QLoRA cannot run on this machine, or None when it can."""
    if hardware.device != "cuda":
        return f"QLoRA needs a CUDA GPU and bitsandbytes; this machine has no CUDA GPU (device: {hardware.device})"
    if importlib.util.find_spec("bitsandbytes") is None:
        return f"QLoRA needs a CUDA GPU and bitsandbytes; bitsandbytes is not installed ({INSTALL_HINT})"
    return None


def check_available(hardware: "Hardware") -> None:
    reason = unavailable_reason(hardware)
    if reason is not None:
        raise QLoRAUnavailable(f"method qlora: {reason}; use method lora (full-precision base) instead")


def quantization_config() -> "BitsAndBytesConfig":
    """The QLoRA recipe (Dettmers et al. 2023): NF4 weights, double-quantized constants, bf16 matmuls."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def load_kwargs() -> dict:
    """``from_pretrained`` arguments: the 4-bit config, placed whole on this process's GPU (torchrun's LOCAL_RANK)."""
    import torch

    return {"quantization_config": quantization_config(), "device_map": {"": int(os.environ.get("LOCAL_RANK", "0"))},
            "dtype": torch.bfloat16}


def prepare_for_training(model: "PreTrainedModel") -> "PreTrainedModel":
    """PEFT's k-bit preparation: norms and head in fp32, input grads on, gradient checkpointing."""
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)


def merged_full_precision(adapter_dir, base: "PreTrainedModel") -> "PreTrainedModel":
    """The trained adapter merged into the unquantized base: a checkpoint that runs without bitsandbytes."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()

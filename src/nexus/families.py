"""Backbones other than Llama: which runtime class rebuilds a bundle whose ``backbone/config.json`` names
``architecture: mamba`` (selective SSM, ``nexus.ssm``) or ``deq`` (fixed-point decoder, ``nexus.deq``)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from nexus.errors import BundleError
from nexus.files import backbone_weights, read_tensors


def _families() -> dict:
    from nexus.deq import DEQDecoder, DEQSpec
    from nexus.ssm import MambaDecoder, MambaSpec

    return {"mamba": (MambaSpec, MambaDecoder), "deq": (DEQSpec, DEQDecoder)}


def is_family(config: dict) -> bool:
    return config.get("architecture") in ("mamba", "deq")


def load_family_decoder(bundle: Path, config: dict, dtype: torch.dtype) -> nn.Module:
    """Build the decoder the config names and load the backbone's weights into it (tied head re-tied)."""
    spec_class, decoder_class = _families()[config["architecture"]]
    config_file = bundle / "backbone" / "config.json"
    try:
        spec = spec_class.from_json(config)
    except (KeyError, TypeError) as error:
        raise BundleError(f"{config_file}: {error}") from error
    decoder = decoder_class(spec)
    weights = backbone_weights(bundle)
    tensors, _ = read_tensors(weights)
    head = next(name for name in decoder.state_dict() if name.endswith("lm_head.weight"))
    expected = set(decoder.state_dict())
    if spec.tie_word_embeddings:
        expected.discard(head)
        tensors.pop(head, None)
    missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or unexpected:
        raise BundleError(f"{weights}: missing tensors {missing[:5]}, unexpected tensors {unexpected[:5]}")
    decoder.load_state_dict(tensors, strict=False)
    return decoder.to(dtype)

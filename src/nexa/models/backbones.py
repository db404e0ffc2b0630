"""What ``backbone/config.json`` says for a ``nexa.models`` student, so ``nexus`` can rebuild it without ``nexa``.

``nexa.bundle.build.write_backbone`` asks :func:`backbone_config` first; ``None`` means the checkpoint is
not one of ours and the Llama path applies. The fields are exactly those of the runtime's spec classes.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from nexus.ssm import MambaSpec


def backbone_config(hf_config: dict[str, Any]) -> dict[str, Any] | None:
    """``{"architecture": "mamba"|"deq", ...spec fields}`` for an SSM or DEQ checkpoint's config.json, else None."""
    model_type = hf_config.get("model_type")
    if model_type == "mamba":
        spec = MambaSpec.from_json(hf_config)
        return {"architecture": "mamba", **{f.name: getattr(spec, f.name) for f in fields(spec) if f.name != "max_position_embeddings"}}
    if model_type == "nexa_deq":
        from nexa.models.deq import NexaDEQConfig

        spec = NexaDEQConfig(**{k: v for k, v in hf_config.items() if k != "model_type"}).spec()
        return {"architecture": "deq", **{f.name: getattr(spec, f.name) for f in fields(spec)}}
    return None


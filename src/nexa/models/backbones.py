"""What ``backbone/config.json`` says for a ``nexa.models`` student, so ``nexus`` can rebuild it without ``nexa``.

``nexa.bundle.build.write_backbone`` asks :func:`backbone_config` first; ``None`` means the checkpoint is
not one of ours and the Llama path applies. The fields are exactly those of the runtime's spec classes.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from nexus.deq import DEQSpec
from nexus.ssm import MambaSpec


def backbone_config(hf_config: dict[str, Any]) -> dict[str, Any] | None:
    """``{"architecture": "mamba"|"deq", ...spec fields}`` for an SSM or DEQ checkpoint's config.json, else None."""
    model_type = hf_config.get("model_type")
    if model_type == "mamba":
        return {"architecture": "mamba", **_spec_fields(MambaSpec, hf_config)}
    if model_type == "nexa_deq":
        from nexa.models.deq import NexaDEQConfig

        spec = NexaDEQConfig(**{k: v for k, v in hf_config.items() if k != "model_type"}).spec()
        return {"architecture": "deq", **{f.name: getattr(spec, f.name) for f in fields(spec)}}
    return None


def _spec_fields(spec_class, hf_config: dict[str, Any]) -> dict[str, Any]:
    names = [f.name for f in fields(spec_class) if f.name != "max_position_embeddings"]
    missing = [n for n in names if n not in hf_config]
    if missing:
        raise KeyError(f"checkpoint config lacks {missing} for a {spec_class.__name__} backbone")
    return {n: hf_config[n] for n in names}

"""Reading a bundle's files safely: manifest, hash checks, and safetensors only (int8 dequantized on load)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import safe_open

from nexus.errors import BundleError, IntegrityError

SUPPORTED_SCHEMA_VERSIONS = {1}
WEIGHT_SUFFIXES = (".safetensors",)


def spec_from_json(spec_class, config: dict, derived: tuple[str, ...] = ()):
    """A backbone spec dataclass from ``backbone/config.json``; fields in ``derived`` keep their defaults."""
    names = [name for name in spec_class.__dataclass_fields__ if name not in derived]
    missing = [name for name in names if name not in config]
    if missing:
        raise KeyError(f"backbone config lacks {missing}")
    return spec_class(**{name: config[name] for name in names})


def read_manifest(bundle: Path) -> dict:
    path = bundle / "manifest.json"
    if not path.is_file():
        raise BundleError(f"{bundle} is not a bundle: manifest.json is missing")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise BundleError(f"{path}: not valid JSON ({error})") from error
    if manifest.get("schema_version") not in SUPPORTED_SCHEMA_VERSIONS:
        raise BundleError(f"{path}: schema_version {manifest.get('schema_version')!r} is not one this runtime reads "
                          f"({sorted(SUPPORTED_SCHEMA_VERSIONS)})")
    for field in ("capabilities", "files"):
        if field not in manifest:
            raise BundleError(f"{path}: field {field!r} is missing")
    return manifest


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_integrity(bundle: Path, manifest: dict) -> None:
    """Every listed file matches its SHA-256, and no weight or tokenizer file is present without being listed."""
    listed = manifest["files"]
    for relative, expected in sorted(listed.items()):
        path = bundle / relative
        if not path.is_file():
            raise IntegrityError(f"{path}: listed in manifest.json but missing")
        actual = sha256_of(path)
        if actual != expected:
            raise IntegrityError(f"{path}: sha256 {actual[:16]}… does not match the manifest's {expected[:16]}…; "
                                 "the file is corrupted or was changed after the bundle was built")
    for path in sorted(bundle.rglob("*")):
        relative = path.relative_to(bundle).as_posix()
        if path.is_file() and (path.suffix in WEIGHT_SUFFIXES or path.name == "tokenizer.json") and relative not in listed:
            raise IntegrityError(f"{path}: weight file is not listed in manifest.json; refusing to load an unverified file")


def read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors of a safetensors file, int8-rowwise weights turned back into float32."""
    if path.suffix != ".safetensors":
        raise BundleError(f"{path}: only .safetensors files are loaded")
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata() or {}
        raw = {name: handle.get_tensor(name) for name in handle.keys()}
    quantized = metadata.get("quantization")
    if quantized not in (None, "int8-rowwise"):
        raise BundleError(f"{path}: quantization {quantized!r} is not supported (expected int8-rowwise)")
    tensors = {}
    for name, tensor in raw.items():
        if name.endswith(".scale") and name[: -len(".scale")] in raw:
            continue
        if tensor.dtype == torch.int8:
            scale = raw.get(f"{name}.scale")
            if scale is None:
                raise BundleError(f"{path}: int8 tensor {name!r} has no {name}.scale")
            tensor = tensor.float() * scale.float()[:, None]
        tensors[name] = tensor
    return tensors, metadata


def backbone_weights(bundle: Path) -> Path:
    """``backbone/model.safetensors`` (an HF folder, bundle schema 2) or ``backbone.safetensors`` (schema 1)."""
    hf = bundle / "backbone" / "model.safetensors"
    return hf if hf.is_file() else bundle / "backbone" / "backbone.safetensors"

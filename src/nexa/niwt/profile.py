"""Stage 2 of NIWT: profile one teacher per capability without ever storing its raw activations.

For each capability about 200 representative (prompt, teacher answer) samples go through the teacher
once to fit streaming PCAs and once to project onto them. What is kept per (capability, key layer):
the PCA basis and per-sample coefficients in float16, the explained variance, and — per capability —
layer-ablation drops, head-importance scalars, per-sample attention entropies of the important heads and
50 raw teacher outputs (text) for verification. Hidden states live only in memory, one batch at a time;
no tokens × hidden tensor is written (``assert_no_token_tensors`` enforces it on every file).
"""

from __future__ import annotations

import json
import random
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import save_file
from sklearn.decomposition import IncrementalPCA
from tokenizers import Tokenizer

from nexa.ledger.listings import NIWT_VERIFICATION_ROWS, PROFILE_VERSION, CapabilityProfile, read_capability_profile

RAW_OUTPUTS = NIWT_VERIFICATION_ROWS  # one number for the profile and for those who size its data (nexa auto)


class ProfileConfig(BaseModel):
    """How much of the teacher to look at and how to summarise it."""

    model_config = ConfigDict(extra="forbid")

    samples: int = Field(200, ge=8, description="Representative samples per capability.")
    pilot_samples: int = Field(64, ge=4, description="Samples used by the layer/head ablation pilot.")
    key_layers: int = Field(3, ge=1, description="Layers kept per capability, most important first (by ablation).")
    components: int = Field(32, ge=2, description="PCA components fitted per (capability, key layer).")
    residual_components: int = Field(64, ge=2, description="Width of the shared residual basis (the student's max width).")
    important_heads: int = Field(2, ge=1, description="Heads per key layer whose attention is anchored.")
    batch_size: int = Field(50, ge=1)
    quantize: str = Field("auto", pattern="^(auto|none|int8|nf4)$",
                          description="auto = NF4 on a GPU with bitsandbytes, full precision otherwise.")


@dataclass
class Batch:
    """Right-padded token ids; ``answer`` marks positions whose next token is an answer token."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    answer: torch.Tensor


def encode_pairs(tokenizer: Tokenizer, pairs: list[tuple[str, str]], eos_id: int, pad_id: int) -> Batch:
    """<s> prompt answer </s>, labels only on answer + </s>; right padding keeps positions 0..n."""
    ids, labels = [], []
    for prompt, answer in pairs:
        p, a = tokenizer.encode(prompt).ids, tokenizer.encode(answer, add_special_tokens=False).ids + [eos_id]
        ids.append(p + a)
        labels.append([-100] * len(p) + a)
    width = max(map(len, ids))
    input_ids = torch.tensor([row + [pad_id] * (width - len(row)) for row in ids])
    label_t = torch.tensor([row + [-100] * (width - len(row)) for row in labels])
    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in ids])
    answer = torch.zeros_like(mask, dtype=torch.bool)
    answer[:, :-1] = label_t[:, 1:] != -100
    return Batch(input_ids, mask, label_t, answer)


def batches(tokenizer, pairs, eos_id, pad_id, size) -> list[Batch]:
    return [encode_pairs(tokenizer, pairs[i:i + size], eos_id, pad_id) for i in range(0, len(pairs), size)]


def load_teacher(model_dir: Path, quantize: str = "auto"):
    """The teacher with eager attention (so attention maps are visible); NF4/INT8 only where a GPU allows.

    Any supported family (its decoder layers, attention heads and o_proj are what the pilot ablates);
    anything else is refused with the supported list before loading."""
    from transformers import AutoModelForCausalLM

    from nexa.train.sources import SUPPORTED_FAMILIES, ModelSourceError

    model_type = json.loads((Path(model_dir) / "config.json").read_text()).get("model_type")
    if model_type not in SUPPORTED_FAMILIES:
        raise ModelSourceError(f"NIWT profile: teacher {model_dir} is a {model_type!r} model; NIWT supports "
                               f"{', '.join(SUPPORTED_FAMILIES)}")

    gpu = torch.cuda.is_available()
    if quantize == "auto":
        quantize = "nf4" if gpu and _has_bitsandbytes() else "none"
    kwargs: dict = {"attn_implementation": "eager"}
    if quantize != "none":
        if not (gpu and _has_bitsandbytes()):
            raise RuntimeError(f"quantize={quantize!r} needs a CUDA GPU and bitsandbytes (pip install bitsandbytes); "
                               "use quantize: none (full precision) on CPU")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = (BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4") if quantize == "nf4"
                                         else BitsAndBytesConfig(load_in_8bit=True))
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    model.eval().requires_grad_(False)
    return model, quantize


def _has_bitsandbytes() -> bool:
    import importlib.util

    return importlib.util.find_spec("bitsandbytes") is not None


def answer_loss(model, batch: Batch) -> float:
    """Mean cross-entropy on the answer tokens: the pilot's measure of how much a layer or head matters."""
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    return float(F.cross_entropy(logits[:, :-1].flatten(0, 1), batch.labels[:, 1:].flatten(), ignore_index=-100))


@contextmanager
def skipped_layer(model, layer: int):
    """The decoder layer returns its input unchanged: the residual stream flows past it."""
    handle = model.model.layers[layer].register_forward_hook(
        lambda module, args, kwargs, output: kwargs.get("hidden_states", args[0] if args else None), with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def masked_head(model, layer: int, head: int):
    """Zero one head's slice of the attention output before o_proj."""
    attn = model.model.layers[layer].self_attn
    head_dim = attn.head_dim

    def hook(module, args):
        x = args[0].clone()
        x[..., head * head_dim:(head + 1) * head_dim] = 0
        return (x,)

    handle = attn.o_proj.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def pilot_ablation(model, pilot: Batch) -> tuple[dict[int, float], list[list[float]]]:
    """Loss increase per skipped layer, and per masked head (max-normalised to [0, 1])."""
    base = answer_loss(model, pilot)
    layers = len(model.model.layers)
    drops = {}
    for layer in range(layers):
        with skipped_layer(model, layer):
            drops[layer] = answer_loss(model, pilot) - base
    heads = model.config.num_attention_heads
    raw = [[0.0] * heads for _ in range(layers)]
    for layer in range(layers):
        for head in range(heads):
            with masked_head(model, layer, head):
                raw[layer][head] = max(answer_loss(model, pilot) - base, 0.0)
    top = max(max(row) for row in raw) or 1.0
    return drops, [[round(v / top, 6) for v in row] for row in raw]


def attention_entropy(attn: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Per-sample mean entropy of each head's attention over the answer positions: [batch, heads]."""
    entropy = -(attn.clamp_min(1e-9).log() * attn).sum(-1)  # [batch, heads, query]
    weights = batch.answer[:, None, :].float()
    return (entropy * weights).sum(-1) / weights.sum(-1).clamp_min(1.0)


def pooled(values: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Mean over answer positions: [batch, tokens, d] -> [batch, d]."""
    weights = batch.answer[..., None].float()
    return (values * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def teacher_forward(model, batch: Batch):
    with torch.no_grad():
        return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                     output_hidden_states=True, output_attentions=True)


def fit_pcas(model, data: list[Batch], key_layers: list[int], components: int) -> dict[int, IncrementalPCA]:
    """Pass 1: one streaming IncrementalPCA per key layer over answer-position hidden states."""
    pcas = {layer: IncrementalPCA(n_components=components) for layer in key_layers}
    pending: dict[int, list[np.ndarray]] = {layer: [] for layer in key_layers}
    for batch in data:
        hidden = teacher_forward(model, batch).hidden_states
        for layer in key_layers:
            pending[layer].append(hidden[layer + 1][batch.answer].float().numpy())
            rows = sum(len(x) for x in pending[layer])
            if rows >= components:  # IncrementalPCA needs at least n_components rows per partial_fit
                pcas[layer].partial_fit(np.concatenate(pending[layer]))
                pending[layer] = []
    for layer in key_layers:
        if pending[layer] and sum(len(x) for x in pending[layer]) >= components:
            pcas[layer].partial_fit(np.concatenate(pending[layer]))
        if not hasattr(pcas[layer], "components_"):
            raise ValueError(f"layer {layer}: fewer answer tokens than {components} PCA components; lower `components`")
    return pcas


def project(model, data: list[Batch], pcas: dict[int, IncrementalPCA], heads: dict[int, list[int]]) -> dict[str, torch.Tensor]:
    """Pass 2: per-sample pooled PCA coefficients and attention entropies of the important heads."""
    coefficients: dict[int, list[torch.Tensor]] = {layer: [] for layer in pcas}
    entropies: dict[int, list[torch.Tensor]] = {layer: [] for layer in heads}
    for batch in data:
        out = teacher_forward(model, batch)
        for layer, pca in pcas.items():
            basis, mean = torch.from_numpy(pca.components_).float(), torch.from_numpy(pca.mean_).float()
            coefficients[layer].append(pooled((out.hidden_states[layer + 1].float() - mean) @ basis.T, batch))
        for layer, chosen in heads.items():
            entropies[layer].append(attention_entropy(out.attentions[layer].float(), batch)[:, chosen])
    tensors = {f"coefficients.l{l}": torch.cat(v).half() for l, v in coefficients.items()}
    tensors |= {f"attention_entropy.l{l}": torch.cat(v).half() for l, v in entropies.items()}
    return tensors


def residual_basis(model, data: list[Batch], components: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Uncentred principal directions of the residual stream over every layer: [components, hidden] + eigenvalues.

    Uncentred (second moment, accumulated batch by batch) because the student's widths are a linear map of
    the teacher's residual stream, which must send 0 to 0.
    """
    hidden_size = model.config.hidden_size
    second = torch.zeros(hidden_size, hidden_size, dtype=torch.float64)
    for batch in data:
        for states in teacher_forward(model, batch).hidden_states:
            rows = states[batch.attention_mask.bool()].double()
            second += rows.T @ rows
    values, vectors = torch.linalg.eigh(second)
    order = values.argsort(descending=True)[:components]
    return vectors[:, order].T.contiguous().float(), (values[order] / values.sum()).float()


def select_samples(rows: list[dict], capability: str, count: int, seed: int) -> tuple[list[dict], list[dict]]:
    """A seeded random ``count`` samples of one capability, and the next RAW_OUTPUTS for verification."""
    mine = [r for r in rows if r["capability"] == capability]
    random.Random(f"{seed}-{capability}").shuffle(mine)
    if len(mine) < count + RAW_OUTPUTS:
        raise ValueError(f"capability {capability!r} has {len(mine)} materialized samples; profiling needs "
                         f"{count} + {RAW_OUTPUTS} (lower `samples`)")
    return mine[:count], mine[count:count + RAW_OUTPUTS]


def assert_no_token_tensors(folder: Path, token_counts: set[int], hidden_size: int) -> None:
    """Refuse a profile holding any tensor shaped like raw activations (a tokens × hidden matrix)."""
    from safetensors import safe_open

    for file in sorted(Path(folder).rglob("*.safetensors")):
        with safe_open(str(file), "pt") as handle:
            for name in handle.keys():
                shape = handle.get_slice(name).get_shape()
                if hidden_size in shape and any(dim in token_counts for dim in shape if dim != hidden_size):
                    raise AssertionError(f"{file}:{name} has shape {shape}: raw activations must not be stored")


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows), encoding="utf-8")


def teacher_scores(model, tokenizer: Tokenizer, eval_rows: list[dict], max_new_tokens: int,
                   contracts: dict[str, dict] | None = None, scoring=None) -> dict[str, float]:
    """The teacher's score per capability by the registry's metric and benchmark ({capability: {"metric",
    "benchmark"}}, default exact match on the held-out rows; a judge score or an lm-eval task with ``scoring``):
    the gate's reference."""
    from nexa.eval.gate_metrics import capability_items, check_scoring, summarize, torch_answerers
    from nexa.eval.generate import greedy_generate

    contracts = contracts or {}
    check_scoring({c: k["metric"] for c, k in contracts.items()}, scoring)
    rows = [r for capability in sorted({r["capability"] for r in eval_rows}) for r in eval_rows if r["capability"] == capability]
    outputs = []
    for capability in sorted({r["capability"] for r in rows}):  # one capability per batch, as the gate generates
        prompts = [r["prompt"] for r in rows if r["capability"] == capability]
        outputs += [g.output for g in greedy_generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens)]
    values = capability_items(rows, outputs, contracts, scoring, lambda: torch_answerers(model, tokenizer))
    return summarize(values)[0]


def profile_capability(model, tokenizer, teacher: str, capability: str, samples: list[dict], raw: list[dict],
                       config: ProfileConfig, contract: dict, score: float, out: Path) -> CapabilityProfile:
    """Ablation pilot, key layers, streaming PCA, projections; writes ``out/<capability>/``."""
    eos, pad = model.config.eos_token_id, model.config.pad_token_id
    pairs = [(r["prompt"], r["answer"]) for r in samples]
    data = batches(tokenizer, pairs, eos, pad, config.batch_size)
    drops, heads = pilot_ablation(model, encode_pairs(tokenizer, pairs[:config.pilot_samples], eos, pad))
    key_layers = sorted(drops, key=lambda l: -drops[l])[:config.key_layers]
    important = {l: sorted(range(len(heads[l])), key=lambda h: -heads[l][h])[:config.important_heads] for l in key_layers}
    components = min(config.components, model.config.hidden_size)
    pcas = fit_pcas(model, data, key_layers, components)
    tensors = project(model, data, pcas, important)
    for layer, pca in pcas.items():
        tensors[f"basis.l{layer}"] = torch.from_numpy(pca.components_).half()
        tensors[f"mean.l{layer}"] = torch.from_numpy(pca.mean_).half()
        tensors[f"explained_variance.l{layer}"] = torch.from_numpy(pca.explained_variance_).float()
    folder = out / capability
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sorted(tensors.items())}, str(folder / "profile.safetensors"),
              metadata={"teacher": teacher, "capability": capability, "schema_version": str(PROFILE_VERSION)})
    write_jsonl(folder / "samples.jsonl", [{"prompt": r["prompt"], "answer": r["answer"]} for r in samples])
    write_jsonl(folder / "raw_outputs.jsonl", [{"prompt": r["prompt"], "teacher_output": r["answer"]} for r in raw])
    answer_tokens = int(sum(int(b.answer.sum()) for b in data))
    raw_bytes = answer_tokens * model.config.hidden_size * 4 * len(key_layers)
    manifest = CapabilityProfile(
        teacher=teacher, capability=capability, samples=len(samples), answer_tokens=answer_tokens,
        hidden_size=model.config.hidden_size, key_layers=key_layers, layer_drop={str(l): round(d, 6) for l, d in drops.items()},
        head_importance=heads, important_heads={str(l): h for l, h in important.items()},
        explained_variance={str(l): [round(float(v), 6) for v in p.explained_variance_ratio_] for l, p in pcas.items()},
        teacher_score=score, benchmark=contract["benchmark"], metric=contract["metric"],
        retain_fraction=contract["retain_fraction"], bytes_written=0, raw_activation_bytes=raw_bytes, fraction_of_raw=0.0)
    (folder / "profile.json").write_text(manifest.model_dump_json(indent=2))
    written = folder_bytes(folder)
    manifest = manifest.model_copy(update={"bytes_written": written, "fraction_of_raw": round(written / raw_bytes, 6)})
    (folder / "profile.json").write_text(CapabilityProfile.model_validate(manifest.model_dump()).model_dump_json(indent=2))
    return manifest


def read_profile_manifest(folder: Path) -> CapabilityProfile:
    """A capability's ``profile.json``, validated: the one reader every consumer of a profile uses."""
    return read_capability_profile(folder / "profile.json")

"""Stage 4 of NIWT: distillation with activation anchors and recovery, the teacher never in memory.

``L = L_output + α_c · L_activation_anchor + β · L_attention_anchor`` where L_output is cross-entropy on
the teacher's materialized answers, the activation anchor compares the student's hidden states —
projected into the teacher's width and onto the capability's stored PCA basis — with the stored
per-sample coefficients, and the attention anchor compares the attention entropy of the teacher's
important heads with the student heads they were transferred to. Phase 1 trains the adapters only
(one LoRA per capability, PEFT, switched per single-capability batch); phase 2 optionally trains the
backbone jointly. Every ``check_every`` steps each capability's agreement with the 50 stored raw
teacher outputs is measured; a capability that slips gets its α multiplied (anchoring only, no
gradient projection).
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from peft.utils import get_peft_model_state_dict
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import save_file

from nexa.niwt.profile import Batch, attention_entropy, encode_pairs, pooled


class DistillConfig(BaseModel):
    """Steps, learning rates and anchor weights of anchored distillation."""

    model_config = ConfigDict(extra="forbid")

    phase1_steps: int = Field(100, ge=0, description="Adapters only, backbone frozen.")
    phase2_steps: int = Field(300, ge=0, description="Joint fine-tune of backbone and adapters (0 = skip).")
    batch_size: int = Field(16, ge=1)
    step_capabilities: Literal["one", "all"] = Field("one", description="Per optimizer step: one capability's batch "
                                                     "(cycling) or one batch of every capability, gradients summed.")
    micro_batch: int | None = Field(None, ge=1, description="Rows per forward within a batch (gradient accumulation): "
                                    "the whole batch's gradient at the activation memory of this many rows.")
    anchor_batch: int = Field(16, ge=1)
    adapter_learning_rate: float = Field(3e-3, gt=0)
    backbone_learning_rate: float = Field(3e-3, gt=0)
    warmup_steps: int = Field(20, ge=0)
    alpha: float = Field(0.1, ge=0, description="Initial activation-anchor weight (per capability, raised on recovery).")
    beta: float = Field(0.05, ge=0, description="Attention-anchor weight.")
    check_every: int = Field(100, ge=1, description="Steps between recovery checks.")
    slip_tolerance: float = Field(0.02, ge=0, description="Agreement below best − tolerance counts as slipping.")
    recovery_factor: float = Field(2.0, ge=1)
    max_alpha: float = Field(2.0, ge=0)
    max_new_tokens: int = Field(8, ge=1)
    teacher_floor: float = Field(0.1, ge=0, le=1, description="A teacher scoring below this fails the gate (nexa.ledger.retention).")
    judge: dict | None = Field(None, description="{url, model[, rubric_dir, budget_usd]}: the judge of judge:RUBRIC metrics.")
    include_path: str | None = Field(None, description="Folder of lm-eval task YAMLs for lm_eval:METRIC metrics.")


@dataclass
class CapabilityAnchors:
    """One capability's stored profile, in the student's coordinates."""

    pairs: list[tuple[str, str]]
    layers: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]  # student layer -> basis, mean, var, coeffs
    heads: dict[int, tuple[list[int], torch.Tensor]]  # student layer -> student heads, target entropies [n, h]
    verification: list[tuple[str, str]]  # (prompt, raw teacher output)


@dataclass
class TrainState:
    alpha: dict[str, float]
    best_agreement: dict[str, float] = field(default_factory=dict)
    checks: list[dict] = field(default_factory=list)
    recoveries: list[dict] = field(default_factory=list)
    losses: list[tuple[int, float]] = field(default_factory=list)
    step: int = 0


def build_anchors(profile: dict, tensors: dict[str, torch.Tensor], samples: list[dict], raw: list[dict],
                  layer_map: dict[int, int], head_map: dict[int, list[int]], n_student_heads: int) -> CapabilityAnchors:
    """Map a capability's key teacher layers/heads onto the student's (dropped ones are not anchored)."""
    layers, heads = {}, {}
    for teacher_layer in profile["key_layers"]:
        if teacher_layer not in layer_map:
            continue
        s = layer_map[teacher_layer]
        l = f"l{teacher_layer}"
        layers[s] = (tensors[f"basis.{l}"], tensors[f"mean.{l}"], tensors[f"explained_variance.{l}"], tensors[f"coefficients.{l}"])
        kept = head_map.get(teacher_layer, list(range(n_student_heads)))
        important = profile["important_heads"][str(teacher_layer)]
        pairs = [(i, kept.index(h)) for i, h in enumerate(important) if h in kept]
        if pairs:
            heads[s] = ([p[1] for p in pairs], tensors[f"attention_entropy.{l}"][:, [p[0] for p in pairs]])
    return CapabilityAnchors([(r["prompt"], r["answer"]) for r in samples], layers, heads,
                             [(r["prompt"], r["teacher_output"]) for r in raw])


def attach_adapters(student, plan: dict):
    """A PEFT model with one named LoRA adapter per capability (rank from the synthesis plan)."""
    capabilities = sorted(plan)
    def config(cap):
        return LoraConfig(r=plan[cap]["rank"], lora_alpha=plan[cap]["alpha"], target_modules=plan[cap]["target_modules"],
                          lora_dropout=0.0, bias="none")
    model = get_peft_model(student, config(capabilities[0]), adapter_name=capabilities[0])
    for cap in capabilities[1:]:
        model.add_adapter(cap, config(cap))
    return model


def set_trainable(model, capability: str, backbone: bool) -> None:
    """Only ``capability``'s adapter (and the backbone in the joint phase) receives gradients."""
    model.set_adapter(capability)
    for name, param in model.named_parameters():
        if "lora_" in name:
            param.requires_grad_(f".{capability}." in name)
        else:
            param.requires_grad_(backbone)


def output_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), batch.labels[:, 1:].flatten(), ignore_index=-100)


def anchor_losses(model, anchors: CapabilityAnchors, projection: torch.Tensor, tokenizer, ids: list[int],
                  eos: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(activation anchor, attention anchor) on a batch of profiled samples of one capability."""
    batch = encode_pairs(tokenizer, [anchors.pairs[i] for i in ids], eos, pad)
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True,
                output_attentions=bool(anchors.heads))
    activation = torch.zeros(())
    for layer, (basis, mean, variance, coefficients) in anchors.layers.items():
        teacher_space = out.hidden_states[layer + 1] @ projection  # [b, t, D]
        z = pooled((teacher_space - mean) @ basis.T, batch)
        activation = activation + (((z - coefficients[ids]) ** 2) / variance.clamp_min(1e-6)).mean()
    attention = torch.zeros(())
    for layer, (heads, target) in anchors.heads.items():
        entropy = attention_entropy(out.attentions[layer][:, heads], batch)
        attention = attention + F.mse_loss(entropy, target[ids])
    n = max(len(anchors.layers), 1)
    return activation / n, attention / max(len(anchors.heads), 1)


def agreement(model, tokenizer, capability: str, pairs: list[tuple[str, str]], max_new_tokens: int) -> float:
    """Share of prompts where the student (with ``capability``'s adapter) says exactly what the teacher said."""
    from nexa.eval.generate import greedy_generate

    model.set_adapter(capability)
    model.eval()
    outputs = greedy_generate(model, tokenizer, [p for p, _ in pairs], max_new_tokens=max_new_tokens)
    model.train()
    return sum(o.output.strip() == t.strip() for o, (_, t) in zip(outputs, pairs)) / max(len(pairs), 1)


class AnchoredDistiller:
    """Owns the PEFT student, its optimizer and the per-capability anchor weights across phases and retries."""

    def __init__(self, model, tokenizer, train_rows: dict[str, list[tuple[str, str]]], anchors: dict[str, CapabilityAnchors],
                 projection: torch.Tensor, config: DistillConfig, seed: int):
        self.model, self.tokenizer, self.rows, self.anchors = model, tokenizer, train_rows, anchors
        self.projection, self.config = projection, config
        self.capabilities = sorted(anchors)
        self.random = random.Random(seed)
        self.eos, self.pad = model.config.eos_token_id, model.config.pad_token_id
        self.state = TrainState(alpha={c: config.alpha for c in self.capabilities})

    def run_phase(self, steps: int, backbone: bool, capabilities: list[str] | None = None,
                  on_step: Callable[[int], bool] | None = None, progress=None, task=None) -> None:
        """``steps`` optimizer steps cycling over ``capabilities``; ``on_step`` may return True to stop early."""
        if steps <= 0:
            return
        capabilities = capabilities or self.capabilities
        lr = self.config.backbone_learning_rate if backbone else self.config.adapter_learning_rate
        set_trainable(self.model, capabilities[0], backbone)
        params = [p for n, p in self.model.named_parameters() if "lora_" in n or backbone]
        optimizer = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), weight_decay=0.0)
        warmup = min(self.config.warmup_steps, steps // 4)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(warmup, 1)) * 0.5 * (
            1 + math.cos(math.pi * min(s, steps) / steps)))
        self.model.train()
        for step in range(steps):
            group = capabilities if self.config.step_capabilities == "all" else [capabilities[step % len(capabilities)]]
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for capability in group:  # an adapter's gradient survives switching to the next one
                set_trainable(self.model, capability, backbone)
                total += self._backward(capability, len(group))
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            self.state.step += 1
            if self.state.step % 20 == 0:
                self.state.losses.append((self.state.step, round(total, 5)))
            if progress is not None:
                progress.update(task, advance=1, loss=total)
            if self.state.step % self.config.check_every == 0:
                self.recovery_check(capabilities)
            if on_step is not None and on_step(self.state.step):
                return

    def _backward(self, capability: str, parts: int) -> float:
        """Accumulate one batch's loss ÷ ``parts`` into the gradients; returns that loss.

        With ``micro_batch`` the batch runs a slice at a time, each slice's mean answer-token loss weighted by its
        share of the batch's answer tokens (the anchor terms ride on the last slice): the whole batch's loss and
        gradient at a slice's activation memory — at batch 128 the logits and their gradient set the peak."""
        rows = self.rows[capability]
        sample = self.random.sample(rows, min(self.config.batch_size, len(rows)))
        size = self.config.micro_batch or len(sample)
        slices = [encode_pairs(self.tokenizer, sample[i:i + size], self.eos, self.pad) for i in range(0, len(sample), size)]
        tokens = [int(batch.answer.sum()) for batch in slices]
        value = 0.0
        for index, batch in enumerate(slices):
            logits = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            loss = output_loss(logits, batch)
            if len(slices) > 1:
                loss = loss * (tokens[index] / sum(tokens))
            if index == len(slices) - 1:
                loss = self._with_anchors(capability, loss)
            loss = loss / parts
            loss.backward()
            value += loss.item()
        return value

    def _with_anchors(self, capability: str, loss: torch.Tensor) -> torch.Tensor:
        anchors = self.anchors[capability]
        alpha = self.state.alpha[capability]
        if (alpha > 0 or self.config.beta > 0) and anchors.layers:
            ids = self.random.sample(range(len(anchors.pairs)), min(self.config.anchor_batch, len(anchors.pairs)))
            activation, attention = anchor_losses(self.model, anchors, self.projection, self.tokenizer, ids, self.eos, self.pad)
            loss = loss + alpha * activation + self.config.beta * attention
        return loss

    def strengthen_anchor(self, capability: str) -> float:
        """Raise ``capability``'s activation-anchor weight by ``recovery_factor`` (from at least 0.05, capped at
        ``max_alpha``): what a slipping capability and a failed gate both get. Returns the weight it had."""
        old = self.state.alpha[capability]
        self.state.alpha[capability] = min(self.config.max_alpha, max(old, 0.05) * self.config.recovery_factor)
        return old

    def recovery_check(self, capabilities: list[str]) -> dict[str, float]:
        """Agreement with the stored teacher outputs; a slipping capability gets a stronger activation anchor."""
        scores = {}
        for capability in capabilities:
            score = agreement(self.model, self.tokenizer, capability, self.anchors[capability].verification,
                              self.config.max_new_tokens)
            best = self.state.best_agreement.get(capability, 0.0)
            if score < best - self.config.slip_tolerance:
                old = self.strengthen_anchor(capability)
                self.state.recoveries.append({"step": self.state.step, "capability": capability, "agreement": score,
                                              "best": best, "alpha_from": old, "alpha_to": self.state.alpha[capability]})
            self.state.best_agreement[capability] = max(best, score)
            scores[capability] = score
        self.state.checks.append({"step": self.state.step, "agreement": scores})
        return scores


def gate_scores(model, tokenizer, eval_rows: list[dict], route: Callable[[str], str], max_new_tokens: int,
                contracts: dict[str, dict] | None = None, scoring=None) -> dict[str, float]:
    """The registry's metric and benchmark per capability ({capability: {"metric", "benchmark"}}; default exact
    match on the full benchmark; judge scores and lm-eval tasks with ``scoring``), each prompt or lm-eval request
    answered by the adapter the router picks."""
    from nexa.eval.gate_metrics import capability_items, summarize, torch_answerers
    from nexa.eval.generate import greedy_generate

    chosen = [route(r["prompt"]) for r in eval_rows]
    rows, outputs = [], []
    for adapter in sorted(set(chosen)):
        items = [r for r, c in zip(eval_rows, chosen) if c == adapter]
        model.set_adapter(adapter)
        model.eval()
        outputs += [g.output for g in greedy_generate(model, tokenizer, [r["prompt"] for r in items], max_new_tokens=max_new_tokens)]
        rows += items
    try:
        values = capability_items(rows, outputs, contracts or {}, scoring, lambda: torch_answerers(model, tokenizer, route))
    finally:
        model.train()
    return summarize(values)[0]


def export_adapters(model, plan: dict, folder: Path) -> dict[str, str]:
    """``<folder>/<capability>.safetensors`` in the bundle's adapter format (tensors ``<module>.lora_A/B``)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for capability, spec in sorted(plan.items()):
        tensors = {}
        for key, value in get_peft_model_state_dict(model, adapter_name=capability).items():
            match = re.fullmatch(r"base_model\.model\.(.+)\.(lora_[AB])\.weight", key)
            if match is None:
                raise ValueError(f"adapter {capability!r}: unexpected PEFT tensor {key!r}")
            tensors[f"{match.group(1)}.{match.group(2)}"] = value.detach().float().contiguous()
        save_file(tensors, str(folder / f"{capability}.safetensors"),
                  metadata={"capability": capability, "rank": str(spec["rank"]), "alpha": str(spec["alpha"])})
        written[capability] = f"{capability}.safetensors"
    return written


def backbone_state(model) -> dict[str, torch.Tensor]:
    """The student's own weights without any adapter, under its HF family's names."""
    state = {}
    for key, value in model.state_dict().items():
        if "lora_" in key:
            continue
        name = key.removeprefix("base_model.model.").replace(".base_layer.", ".")
        state[name] = value.detach().clone()
    return state

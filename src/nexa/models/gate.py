"""Fitting the uncertainty gate on a calibration split: temperature scaling, then a threshold with risk control.

The temperature minimises the answer tokens' NLL (classic temperature scaling). The threshold is chosen by
Learn-then-Test fixed-sequence testing (Angelopoulos et al., "Learn then Test", 2021): thresholds are
tried from the most to the least conservative, and one is accepted while a binomial test rejects
"error among answered > alpha" at level ``delta``; the last accepted one is kept. With probability at least
1 - delta the selective error of the chosen threshold on new prompts from the same distribution is ≤ alpha.
If no threshold passes, the gate abstains on everything (coverage 0) rather than claim what it cannot.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from scipy.stats import binom

TEMPERATURES = [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0]


def fit_temperature(model, examples: list[tuple[list[int], list[int]]]) -> float:
    """The temperature (from a grid) with the lowest NLL of the gold answers' tokens under ``model`` (HF).

    ``examples`` are (ids, labels) pairs as the train layer encodes them (labels -100 off the answer).
    """
    logits_all, labels_all = [], []
    model.eval()
    with torch.no_grad():
        for ids, labels in examples:
            logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
            target = torch.tensor(labels[1:])
            keep = target != -100
            logits_all.append(logits[keep])
            labels_all.append(target[keep])
    return temperature_by_nll(torch.cat(logits_all), torch.cat(labels_all))


def temperature_by_nll(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The grid temperature minimising the cross-entropy of ``labels`` under ``logits`` [tokens, vocab]."""
    losses = {t: float(torch.nn.functional.cross_entropy(logits / t, labels)) for t in TEMPERATURES}
    return min(losses, key=losses.get)


def selective_error(confidences: list[float], correct: list[bool], threshold: float) -> tuple[float, float]:
    """(error rate among answered, coverage) when prompts with confidence ≥ threshold are answered."""
    answered = [ok for c, ok in zip(confidences, correct) if c >= threshold]
    coverage = len(answered) / len(correct) if correct else 0.0
    error = (sum(not ok for ok in answered) / len(answered)) if answered else 0.0
    return error, coverage


def calibrate_threshold(confidences: list[float], correct: list[bool], alpha: float, delta: float = 0.1) -> float:
    """The most permissive threshold whose selective error is certified ≤ alpha (fixed-sequence testing)."""
    if not 0 < alpha < 1 or not 0 < delta < 1:
        raise ValueError(f"alpha and delta must be in (0, 1), got {alpha}, {delta}")
    accepted = math.inf
    # The sequence starts where even zero errors could be certified ((1 - alpha)^n ≤ delta): fewer answered
    # prompts can never pass and would stop the sequence at once. It depends on no label, so the test stays valid.
    smallest = math.ceil(math.log(delta) / math.log(1 - alpha))
    for threshold in sorted(set(confidences), reverse=True):
        answered = [ok for c, ok in zip(confidences, correct) if c >= threshold]
        if len(answered) < smallest:
            continue
        errors = sum(not ok for ok in answered)
        p_value = float(binom.cdf(errors, len(answered), alpha))  # P(≤ errors | true risk = alpha)
        if p_value > delta:
            break
        accepted = threshold
    return accepted


def risk_coverage(confidences: list[float], correct: list[bool], points: int = 10) -> list[dict[str, float]]:
    """Selective error at coverages from 1/points to 1 (answering the most confident first)."""
    order = sorted(range(len(correct)), key=lambda i: -confidences[i])
    curve = []
    for k in range(1, points + 1):
        take = order[:max(1, round(len(order) * k / points))]
        curve.append({"coverage": len(take) / len(order), "error": sum(not correct[i] for i in take) / len(take)})
    return curve


def gate_manifest_entry(temperature: float, threshold: float, alpha: float, delta: float,
                        fallback_url: str | None = None) -> dict[str, Any]:
    """What ``nexus.gate.UncertaintyGate.from_manifest`` reads (``threshold`` inf is written as 2.0: abstain always)."""
    entry = {"temperature": temperature, "threshold": threshold if math.isfinite(threshold) else 2.0,
             "alpha": alpha, "delta": delta, "score": "min-step-maxprob"}
    if fallback_url:
        entry["fallback_url"] = fallback_url
    return entry

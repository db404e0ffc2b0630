"""Calibrating a bundle's uncertainty gate on labelled prompts, written into its manifest for ``nexus`` to apply.

The one door for fitting the gate (``nexa bundle calibrate-gate`` and ``benchmarks/architectures.py`` both
call :func:`calibrate_gate`): the temperature is fitted on the gold answers' tokens through the bundle's own
decoder (what ``nexus`` will run, adapters and routing included), the threshold by Learn-then-Test on the
confidences ``nexus`` reports for its greedy answers (``nexa.models.gate``). Only ``manifest.json`` changes;
every other file and its hash stay as they were.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from nexa.bundle.build import write_manifest
from nexa.models.gate import (calibrate_threshold, gate_manifest_entry, risk_coverage, selective_error,
                              temperature_by_nll)


def answer_logits(model, rows: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """The decoder's logits at each gold answer token (EOS included) and those tokens, teacher-forced, routed."""
    logits_all, labels_all = [], []
    with torch.no_grad():
        for row in rows:
            prompt_ids = model.tokenizer.encode(row["prompt"]).ids
            answer_ids = model.tokenizer.encode(row["answer"], add_special_tokens=False).ids + [model.spec.eos_token_id]
            ids = torch.tensor([prompt_ids + answer_ids], device=model.device)
            model.decoder.set_active_adapter(model._resolve(row["prompt"], row.get("capability"), False))
            logits = model.decoder(ids, torch.ones_like(ids, dtype=torch.bool), None)[0].float()
            logits_all.append(logits[len(prompt_ids) - 1:-1])
            labels_all.append(torch.tensor(answer_ids, device=model.device))
    return torch.cat(logits_all), torch.cat(labels_all)


def calibrate_gate(bundle: Path, rows: list[dict], alpha: float, delta: float = 0.1, fallback_url: str | None = None,
                   max_new_tokens: int | None = None) -> dict[str, Any]:
    """Fit temperature and threshold on ``rows`` ({prompt, answer[, capability]}), write ``uncertainty_gate``.

    Returns the fitted gate and what it does on the calibration rows themselves (coverage, error among
    answered, the risk-coverage curve). A threshold that cannot be certified is written as "abstain always".
    """
    from nexus import NexusModel
    from nexus.gate import UncertaintyGate

    for name, value in (("alpha", alpha), ("delta", delta)):
        if not 0 < value < 1:
            raise ValueError(f"--{name} must be between 0 and 1 (exclusive), got {value}")
    if not rows:
        raise ValueError("no calibration rows")
    model = NexusModel.load(bundle)
    temperature = temperature_by_nll(*answer_logits(model, rows))
    model.gate = UncertaintyGate(temperature=temperature, threshold=0.0)
    outputs = model.complete_batch([r["prompt"] for r in rows], max_new_tokens=max_new_tokens)
    confidences = [g.confidence for g in outputs]
    correct = [g.text.strip() == r["answer"].strip() for g, r in zip(outputs, rows)]
    threshold = calibrate_threshold(confidences, correct, alpha, delta)
    write_manifest(bundle, uncertainty_gate=gate_manifest_entry(temperature, threshold, alpha, delta, fallback_url))
    error, coverage = selective_error(confidences, correct, threshold)
    return {"temperature": temperature, "threshold": threshold if math.isfinite(threshold) else None, "alpha": alpha,
            "delta": delta, "calibration_rows": len(rows), "calibration_accuracy": sum(correct) / len(correct),
            "calibration_coverage": coverage, "calibration_error_answered": error,
            "risk_coverage": risk_coverage(confidences, correct, 5)}


def read_calibration_rows(path: Path) -> list[dict]:
    """The JSONL rows, each with string ``prompt`` and ``answer``; the first bad line is named (file:line) in the error."""
    import json

    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number} is not JSON: {error}") from error
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("prompt", "answer")):
            raise ValueError(f"{path}:{number} needs string 'prompt' and 'answer' fields")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path} has no rows")
    return rows

"""What a bundle's uncertainty gate does on an eval split: coverage, error among answered, the risk–coverage curve.

A gated bundle (``uncertainty_gate`` in its manifest, fitted by ``nexa bundle calibrate-gate``) flags the
prompts it is unsure of. The eval scores every prompt as the student answered it, gate or not — an abstained
prompt keeps the student's own text (the eval never escalates to the gate's fallback endpoint) — so the
leaderboard's score stays the accuracy over all items. Beside it the report gives, per model and capability,
the fraction answered (``coverage``), the error rate among the answered (``error_answered``, to hold against
the gate's ``alpha``) and the selective error at every coverage (``risk_coverage``), all from
``nexa.models.gate`` over the items of the headline metric (an item is right when its score is 1).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any


def bundle_gate(path: Path | None) -> dict[str, Any] | None:
    """The ``uncertainty_gate`` entry of a bundle's manifest; None for checkpoints, API models and ungated bundles."""
    manifest = Path(path) / "manifest.json" if path is not None else None
    if manifest is None or not manifest.exists():
        return None
    return json.loads(manifest.read_text(encoding="utf-8")).get("uncertainty_gate")


def gate_fields(gate: dict[str, Any], generation) -> dict[str, Any]:
    """The per-item fields a gated model's generation adds to its eval item."""
    return {"confidence": generation.confidence, "abstained": generation.abstained,
            "gate_threshold": float(gate["threshold"]), "gate_alpha": gate.get("alpha")}


def abstention_report(scored: list[dict], metric: str = "exact_match") -> dict[str, dict[str, dict[str, Any]]]:
    """``{model: {capability: {coverage, error_answered, alpha, threshold, n, risk_coverage}}}`` for gated models
    (those whose items carry a confidence); empty when no model evaluated has a gate."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for item in scored:
        if item["metric"] == metric and item.get("confidence") is not None:
            groups[(item["model"], item["capability"])].append(item)
    if not groups:
        return {}
    from nexa.models.gate import risk_coverage, selective_error  # only for gated models: nexa.models imports torch

    report: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for (model, capability), items in sorted(groups.items()):
        confidences = [i["confidence"] for i in items]
        correct = [i["score"] >= 1.0 for i in items]
        threshold = items[0]["gate_threshold"]
        error, coverage = selective_error(confidences, correct, threshold)
        report[model][capability] = {"coverage": coverage, "error_answered": error, "alpha": items[0]["gate_alpha"],
                                     "threshold": threshold, "n": len(items),
                                     "risk_coverage": risk_coverage(confidences, correct)}
    return dict(report)

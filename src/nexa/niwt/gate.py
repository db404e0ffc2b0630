"""Stage 5 of NIWT as a standalone check: the student through the ``nexus`` runtime alone, against the profile's teacher scores.

The pipeline's student stage gates (and retrains failing adapters) in-process; this is the same rule
applied afterwards to the saved student, with nothing loaded but the runtime — no teacher, no HF model code.
"""

from __future__ import annotations

import json
from pathlib import Path

from nexa.ledger import Lab
from nexa.ledger.datasets import read_split
from nexa.ledger.retention import DEFAULT_TEACHER_FLOOR, gate_failures, retention
from nexa.niwt.profile import read_profile_manifest


def profile_contracts(profile_dir: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Teacher score and retain fraction per capability, from a profile output folder."""
    summary = json.loads((profile_dir / "summary.json").read_text())
    folder = profile_dir / "profiles" / summary["teacher"]
    retain = {c: read_profile_manifest(folder / c).retain_fraction for c in summary["capabilities"]}
    return summary["teacher_scores"], retain


def profile_metrics(profile_dir: Path) -> dict[str, dict[str, str]]:
    """The registry's metric and benchmark per capability, as the profile stage recorded them (exact match when
    not recorded)."""
    summary = json.loads((profile_dir / "summary.json").read_text())
    folder = profile_dir / "profiles" / summary["teacher"]
    manifests = {c: read_profile_manifest(folder / c) for c in summary["capabilities"]}
    return {c: {"metric": m.metric, "benchmark": m.benchmark} for c, m in manifests.items()}


def runtime_gate(lab: Lab, model_dir: Path, profile_dir: Path, listing: Path, max_new_tokens: int = 8,
                 teacher_floor: float = DEFAULT_TEACHER_FLOOR, scoring=None) -> dict:
    """Each capability's registry metric (per-item rule, judge score or lm-eval task; ``scoring`` brings the
    judge and lm-eval's task folder) with the router choosing adapters; passes when every retention ≥ its
    retain fraction and every teacher scores at least ``teacher_floor``."""
    from nexus import NexusModel

    from nexa.eval.gate_metrics import capability_items, check_scoring, nexus_answerers, summarize

    teacher_scores, retain = profile_contracts(profile_dir)
    contracts = profile_metrics(profile_dir)
    check_scoring({c: k["metric"] for c, k in contracts.items()}, scoring)
    rows = read_split(lab, listing, "eval")
    model = NexusModel.load(model_dir, device="cpu")
    outputs = model.generate_batch([r["prompt"] for r in rows], capability=None, max_new_tokens=max_new_tokens)
    student, prompts, _ = summarize(capability_items(rows, outputs, contracts, scoring, lambda: nexus_answerers(model)))
    kept = retention(student, teacher_scores)
    reasons = gate_failures(kept, retain, teacher_scores, teacher_floor)
    return {"teacher_scores": teacher_scores, "student_scores": student, "retention": kept, "failing": sorted(reasons),
            "reasons": reasons, "passed": not reasons, "retain_fraction": retain,
            "metrics": {c: k["metric"] for c, k in contracts.items()}, "eval_prompts": prompts}

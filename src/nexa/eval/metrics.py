"""The per-item metrics a gate can compute from a generation and its reference, by the name the teacher
registry gives them (``configs/teacher_registry.json``: each capability's ``metric``).

Gates score the teacher and the student with the same function, so retention compares like with like.
The gates' other metrics (``judge:RUBRIC``, an LLM judge's score; ``lm_eval:METRIC``, an lm-eval task) are
computed in :mod:`nexa.eval.gate_metrics`; any other name is refused rather than silently replaced by exact match.
"""

from __future__ import annotations

from typing import Callable

from nexa.eval.exact import exact_match, numeric_match

ItemScorer = Callable[[str, str], float]
ITEM_METRICS: dict[str, ItemScorer] = {
    "exact_match": exact_match,
    "accuracy": exact_match,  # a generated answer is right when it is the reference
    "numeric_match": numeric_match,
}


def item_scorer(metric: str) -> ItemScorer:
    """The scoring rule named ``metric``; a clear error for a metric gates cannot compute per item."""
    try:
        return ITEM_METRICS[metric]
    except KeyError:
        raise ValueError(f"metric {metric!r} is not one the gate can compute; known: {sorted(ITEM_METRICS)}, "
                         "judge:RUBRIC (an LLM judge with rubrics/RUBRIC.yaml) and lm_eval:METRIC (the lm-eval task "
                         "the capability's benchmark names)") from None

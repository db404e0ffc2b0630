"""The retention contract every gate reads the same way: student score / teacher score, per capability."""

from __future__ import annotations

from typing import Mapping

DEFAULT_TEACHER_FLOOR = 0.1  # below this a teacher does not know its task: retention against it means nothing


def retention(student_scores: Mapping[str, float], teacher_scores: Mapping[str, float]) -> dict[str, float]:
    """Per capability of the teacher: the share of its score the student kept.

    A capability the student was not scored on counts as 0. A teacher that scores 0 leaves nothing
    to lose, so its retention is 1.0 — but no gate passes on it: :func:`gate_failures` fails every
    capability whose teacher scores below a floor. NIWT's training gate, its runtime gate and the bundle's
    teacher-free verify all use this one rule, so their numbers are comparable.
    """
    return {c: (student_scores.get(c, 0.0) / t if t > 0 else 1.0) for c, t in sorted(teacher_scores.items())}


def failing_capabilities(kept: Mapping[str, float], retain: Mapping[str, float] | float) -> list[str]:
    """Capabilities below their retain fraction (one number for all, or one per capability)."""
    return sorted(c for c, r in kept.items() if r < (retain if isinstance(retain, (int, float)) else retain[c]))


def gate_failures(kept: Mapping[str, float], retain: Mapping[str, float] | float, teacher_scores: Mapping[str, float],
                  floor: float = DEFAULT_TEACHER_FLOOR) -> dict[str, str]:
    """Why each failing capability fails: a teacher below ``floor`` (retention against it would pass by
    division), or retention below its retain fraction."""
    reasons = {c: f"retention {kept[c]:.3f} < retain fraction {retain if isinstance(retain, (int, float)) else retain[c]}"
               for c in failing_capabilities(kept, retain)}
    for capability, score in teacher_scores.items():
        if score < floor:
            reasons[capability] = (f"teacher scores {score:.3f}, below the floor {floor}: it does not know this task, "
                                   "so retention against it means nothing")
    return dict(sorted(reasons.items()))

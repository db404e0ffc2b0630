"""The retention contract every gate reads the same way: student score / teacher score, per capability."""

from __future__ import annotations

from typing import Mapping


def retention(student_scores: Mapping[str, float], teacher_scores: Mapping[str, float]) -> dict[str, float]:
    """Per capability of the teacher: the share of its score the student kept.

    A capability the student was not scored on counts as 0. A teacher that scores 0 leaves nothing
    to lose, so its retention is 1.0 (the golden test separately requires a teacher that knows its
    task, or retention would mean nothing). NIWT's training gate, its runtime gate and the bundle's
    teacher-free verify all use this one rule, so their numbers are comparable.
    """
    return {c: (student_scores.get(c, 0.0) / t if t > 0 else 1.0) for c, t in sorted(teacher_scores.items())}


def failing_capabilities(kept: Mapping[str, float], retain: Mapping[str, float] | float) -> list[str]:
    """Capabilities below their retain fraction (one number for all, or one per capability)."""
    return sorted(c for c, r in kept.items() if r < (retain if isinstance(retain, (int, float)) else retain[c]))

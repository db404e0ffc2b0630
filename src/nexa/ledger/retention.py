"""The retention contract every gate reads the same way: student score / teacher score, per capability."""

from __future__ import annotations

import math
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

def retention_interval(student_score: float, teacher_score: float, student_n: int, teacher_n: int,
                       level: float = 0.95, student_var: float | None = None,
                       teacher_var: float | None = None) -> tuple[float, float]:
    """A ``level`` confidence interval for student score / teacher score (Katz's log-ratio delta method).

    Scores are exact-match proportions over ``student_n`` and ``teacher_n`` prompts. The log of the
    ratio is close to normal with variance 1/x_s - 1/n_s + 1/x_t - 1/n_t; half a success and half a
    failure are added to each count (Haldane) so a perfect or a zero score still gets a finite width.
    The samples are treated as independent, which is conservative when both models saw the same prompts
    (their errors are positively correlated). Deterministic: no seed, no thread dependence.

    For a continuous per-item score in [0, 1] (an LLM judge's score mapped onto [0, 1]) pass the per-item
    variances: the same delta method then uses Var(log ratio of means) = s_s²/(n_s·m_s²) + s_t²/(n_t·m_t²),
    with the means shrunk by the same half item (the bound below in place of both variances is Katz's formula). A variance not
    known (the teacher's, when only its mean travelled) is bounded by m(1 - m), the largest variance a
    [0, 1] score with mean m can have, so the interval errs wide.
    """
    from statistics import NormalDist

    if student_n <= 0 or teacher_n <= 0:
        raise ValueError(f"a retention interval needs prompts on both sides (student {student_n}, teacher {teacher_n})")
    xs, ns = student_score * student_n + 0.5, student_n + 1.0
    xt, nt = teacher_score * teacher_n + 0.5, teacher_n + 1.0
    z = NormalDist().inv_cdf(0.5 + level / 2)
    centre = math.log((xs / ns) / (xt / nt))
    if student_var is None and teacher_var is None:
        variance = 1 / xs - 1 / ns + 1 / xt - 1 / nt
    else:
        ms, mt = xs / ns, xt / nt
        vs = student_var if student_var is not None else ms * (1 - ms)
        vt = teacher_var if teacher_var is not None else mt * (1 - mt)
        variance = vs / (ns * ms * ms) + vt / (nt * mt * mt)
    half = z * math.sqrt(max(variance, 0.0))
    return math.exp(centre - half), math.exp(centre + half)


def retention_intervals(student_scores: Mapping[str, float], teacher_scores: Mapping[str, float],
                        prompts: Mapping[str, int], level: float = 0.95,
                        variances: Mapping[str, tuple[float | None, float | None]] | None = None) -> dict[str, list[float]]:
    """Per capability of the teacher: [lo, hi] of retention, both scored on ``prompts[c]`` held-out prompts.

    ``variances[c]`` = (student, teacher) per-item variance for a continuous metric (see
    :func:`retention_interval`); capabilities not in it are proportions. A teacher scoring 0 has
    retention 1.0 by the rule above, so its interval is [1.0, 1.0].
    """
    variances = variances or {}
    return {c: ([round(v, 6) for v in retention_interval(student_scores.get(c, 0.0), t, prompts[c], prompts[c], level,
                                                         *variances.get(c, (None, None)))]
                if t > 0 else [1.0, 1.0]) for c, t in sorted(teacher_scores.items())}

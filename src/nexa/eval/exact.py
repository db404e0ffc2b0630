"""Exact-match and numeric-tolerance judging: rules, not models, so their "prompt" is their definition."""

from __future__ import annotations

import math
import re

from nexa.ledger.hashing import sha256_bytes

JUDGE_ID = "exact_match@1"
# The judge's "prompt" is its definition; hashing it ties every score to the rule that produced it.
JUDGE_DEFINITION = "score = 1 if output.strip() == reference.strip() else 0; capability score = mean"
JUDGE_PROMPT_HASH = sha256_bytes(JUDGE_DEFINITION.encode())

NUMERIC_JUDGE_ID = "numeric_tolerance@1"
NUMERIC_DEFINITION = ("score = 1 if the first number in output is within max(abs_tol, rel_tol*|reference|) of the "
                      "reference number else 0; rel_tol={rel_tol}, abs_tol={abs_tol}")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def exact_match(output: str, reference: str) -> float:
    return 1.0 if output.strip() == reference.strip() else 0.0


def numeric_prompt_hash(rel_tol: float, abs_tol: float) -> str:
    """The tolerance is part of the rule, so two tolerances never share a hash."""
    return sha256_bytes(NUMERIC_DEFINITION.format(rel_tol=rel_tol, abs_tol=abs_tol).encode())


def first_number(text: str) -> float | None:
    match = _NUMBER.search(text)
    return float(match.group()) if match else None


def numeric_match(output: str, reference: str, rel_tol: float = 1e-6, abs_tol: float = 0.0) -> float:
    """1 when the first number in ``output`` is close to the reference number; 0 when absent or far.

    A reference that is not a number is a caller error (the task is not numeric), not a zero score.
    """
    expected = first_number(reference)
    if expected is None:
        raise ValueError(f"numeric judging needs a numeric reference, got {reference!r}")
    got = first_number(output)
    if got is None:
        return 0.0
    return 1.0 if math.isclose(got, expected, rel_tol=rel_tol, abs_tol=abs_tol) else 0.0

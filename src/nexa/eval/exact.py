"""Exact-match judging: the answer after whitespace stripping must equal the reference character for character."""

from __future__ import annotations

from nexa.ledger.hashing import sha256_bytes

JUDGE_ID = "exact_match@1"
# The judge's "prompt" is its definition; hashing it ties every score to the rule that produced it.
JUDGE_DEFINITION = "score = 1 if output.strip() == reference.strip() else 0; capability score = mean"
JUDGE_PROMPT_HASH = sha256_bytes(JUDGE_DEFINITION.encode())


def exact_match(output: str, reference: str) -> float:
    return 1.0 if output.strip() == reference.strip() else 0.0

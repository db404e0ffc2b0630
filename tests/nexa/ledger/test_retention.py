"""The retention contract: one rule for NIWT's gates and the bundle's verify."""

from __future__ import annotations

import pytest

from nexa.bundle.verify import gate
from nexa.ledger import failing_capabilities, retention


def test_retention_is_student_over_teacher_per_teacher_capability():
    kept = retention({"chemistry": 0.48, "science": 0.99, "extra": 1.0}, {"chemistry": 0.5, "science": 0.99, "reasoning": 0.8})
    assert kept == {"chemistry": pytest.approx(0.96), "reasoning": 0.0, "science": pytest.approx(1.0)}
    assert list(kept) == ["chemistry", "reasoning", "science"]  # sorted, teacher's capabilities only


def test_a_teacher_scoring_zero_leaves_nothing_to_lose():
    assert retention({"chemistry": 0.0}, {"chemistry": 0.0}) == {"chemistry": 1.0}


def test_failing_takes_one_fraction_or_one_per_capability():
    kept = {"chemistry": 0.96, "science": 0.98}
    assert failing_capabilities(kept, 0.97) == ["chemistry"]
    assert failing_capabilities(kept, {"chemistry": 0.95, "science": 0.99}) == ["science"]
    assert failing_capabilities(kept, 0.96) == []  # the boundary passes: ≥, not >


def test_the_bundle_gate_uses_the_same_rule():
    result = gate({"chemistry": 0.5, "science": 0.0}, {"chemistry": 0.48}, 0.97)
    assert result == {"retention": {"chemistry": pytest.approx(0.96), "science": 1.0}, "failing": ["chemistry"], "passed": False}

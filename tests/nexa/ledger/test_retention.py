"""The retention contract: one rule for NIWT's gates and the bundle's verify."""

from __future__ import annotations

import pytest

from nexa.bundle.verify import gate
from nexa.eval.metrics import item_scorer
from nexa.ledger import failing_capabilities, retention
from nexa.ledger.retention import DEFAULT_TEACHER_FLOOR, gate_failures


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
    assert result["retention"] == {"chemistry": pytest.approx(0.96), "science": 1.0}
    assert result["failing"] == ["chemistry", "science"] and result["passed"] is False
    assert "retention 0.960 < retain fraction 0.97" in result["reasons"]["chemistry"]
    assert "below the floor 0.1" in result["reasons"]["science"]  # a teacher scoring 0 no longer passes by division


def test_a_teacher_below_the_floor_fails_the_gate_with_that_reason():
    kept = retention({"chemistry": 0.05}, {"chemistry": 0.05})
    assert kept == {"chemistry": 1.0} and failing_capabilities(kept, 0.97) == []
    reasons = gate_failures(kept, 0.97, {"chemistry": 0.05})
    assert list(reasons) == ["chemistry"] and "teacher scores 0.050" in reasons["chemistry"]
    assert gate_failures(kept, 0.97, {"chemistry": 0.05}, floor=0.01) == {}  # the floor is configurable
    assert DEFAULT_TEACHER_FLOOR == 0.1 and gate({"a": 0.1}, {"a": 0.1}, 0.97)["passed"] is True  # the floor passes


@pytest.mark.parametrize("metric, output, reference, expected", [
    ("exact_match", " 42 ", "42", 1.0), ("accuracy", "41", "42", 0.0), ("numeric_match", "about 42.0 m", "42", 1.0)])
def test_gates_score_with_the_registry_metric(metric, output, reference, expected):
    assert item_scorer(metric)(output, reference) == expected


def test_a_metric_the_gate_cannot_compute_is_refused_by_name():
    with pytest.raises(ValueError, match="'pass@1' is not one the gate can compute.*judge:RUBRIC.*lm_eval:METRIC"):
        item_scorer("pass@1")


def test_the_retention_interval_covers_the_ratio_and_narrows_with_more_prompts():
    from nexa.ledger.retention import retention_interval, retention_intervals

    small = retention_interval(0.95, 0.97, 200, 200)
    large = retention_interval(0.95, 0.97, 1000, 1000)
    assert small[0] < 0.95 / 0.97 < small[1] and large[0] < 0.95 / 0.97 < large[1]
    assert large[1] - large[0] < (small[1] - small[0]) / 2 + 0.002  # width shrinks ~ 1/sqrt(n)
    assert 0.95 < large[0] < 0.97 < large[1] < 1.0  # 2 points below the teacher on 1,000 prompts is real
    perfect = retention_interval(1.0, 1.0, 1000, 1000)
    assert perfect[0] < 1.0 < perfect[1] and perfect[1] - perfect[0] < 0.01  # finite at a perfect score
    assert retention_intervals({"c": 0.5}, {"c": 0.0, "d": 0.9}, {"c": 10, "d": 10})["c"] == [1.0, 1.0]
    assert retention_intervals({}, {"d": 0.9}, {"d": 1000})["d"][1] < 0.01  # an unscored capability is near 0
    with pytest.raises(ValueError, match="prompts on both sides"):
        retention_interval(0.9, 0.9, 0, 10)


def test_a_continuous_score_interval_uses_item_variances_and_bounds_an_unknown_one():
    """Delta method on the log ratio of means: the Bernoulli bound m(1 - m) for both sides is Katz's interval;
    a judge whose scores barely vary gets a narrower one; an unknown teacher variance is bounded (wider)."""
    from nexa.ledger.retention import retention_interval

    katz = retention_interval(0.6, 0.75, 40, 40)
    ms, mt = (0.6 * 40 + 0.5) / 41, (0.75 * 40 + 0.5) / 41
    assert retention_interval(0.6, 0.75, 40, 40, student_var=ms * (1 - ms), teacher_var=mt * (1 - mt)) == pytest.approx(katz)
    tight = retention_interval(0.6, 0.75, 40, 40, student_var=0.01, teacher_var=0.01)
    bounded = retention_interval(0.6, 0.75, 40, 40, student_var=0.01)
    assert katz[0] < tight[0] < 0.8 < tight[1] < katz[1]
    assert bounded[0] < tight[0] and tight[1] < bounded[1]

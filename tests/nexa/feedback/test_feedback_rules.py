"""Weakness rules: parsing what people write, and which leaderboard rows they flag."""

from __future__ import annotations

import pytest

from nexa.feedback.rules import find_weaknesses, parse_rule


def _row(model, capability, metric, score, role="student"):
    return {"model": model, "role": role, "capability": capability, "metric": metric, "score": score, "dataset": f"{capability}@v1"}


def test_parse_rules_as_written():
    rule = parse_rule("accuracy < 0.9 on capability reasoning")
    assert (rule.metric, rule.op, rule.threshold, rule.capability) == ("exact_match", "<", 0.9, "reasoning")
    assert parse_rule("falsifiability < 4.0").capability is None
    assert parse_rule("clarity <= 3").op == "<="


@pytest.mark.parametrize("text", ["accuracy is low", "accuracy < high", "< 0.9", ""])
def test_bad_rules_say_the_expected_form(text):
    with pytest.raises(ValueError, match="METRIC < NUMBER"):
        parse_rule(text)


def test_rules_flag_only_matching_rows_of_the_chosen_role():
    rows = [_row("s", "reasoning", "exact_match", 0.85), _row("s", "science", "exact_match", 0.95),
            _row("s", "hypothesis", "falsifiability", 3.2), _row("t", "reasoning", "exact_match", 0.5, role="teacher")]
    weak = find_weaknesses(rows, [parse_rule("accuracy < 0.9"), parse_rule("falsifiability < 4.0")])
    assert [(w.capability, w.metric, w.score) for w in weak] == [("hypothesis", "falsifiability", 3.2), ("reasoning", "exact_match", 0.85)]
    only = find_weaknesses(rows, [parse_rule("accuracy < 0.9 on capability science")])
    assert only == []
    teacher = find_weaknesses(rows, [parse_rule("accuracy < 0.9")], models=["t"])
    assert [w.model for w in teacher] == ["t"]

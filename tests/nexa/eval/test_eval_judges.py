"""Rule judges: exact and numeric-tolerance matching, and the documented heuristic rubric scorers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nexa.eval import rubric
from nexa.eval.exact import exact_match, numeric_match, numeric_prompt_hash

GOOD = ("Raising magnetic field strength increases confinement time monotonically within the studied range. "
        "Vary the field over five levels with three replicates each and a control; measure confinement time; "
        "test against a flat null at alpha 0.05. Risks: confounding from sample preparation and drift.")
VAGUE = "Magnets might possibly do something to plasma in some way."


def test_exact_and_numeric_matching():
    assert exact_match(" 42 ", "42") == 1.0 and exact_match("42.0", "42") == 0.0
    assert numeric_match("about 42.0 units", "42") == 1.0
    assert numeric_match("43", "42", rel_tol=0.05) == 1.0 and numeric_match("43", "42") == 0.0
    assert numeric_match("no number", "42") == 0.0
    with pytest.raises(ValueError, match="numeric reference"):
        numeric_match("1", "forty-two")
    assert numeric_prompt_hash(1e-6, 0.0) != numeric_prompt_hash(0.05, 0.0)


def test_a_good_hypothesis_outscores_a_vague_one_on_every_quality_metric():
    good, vague = rubric.score_all(GOOD), rubric.score_all(VAGUE)
    for metric in ("falsifiability", "experimental_design", "risk_awareness"):
        assert good[metric] >= 4.0 > vague[metric], metric
    assert good["falsifiability"] == 5.0 and vague["falsifiability"] == 1.0


def test_clarity_penalises_run_on_and_tiny_answers():
    run_on = " ".join(["the field and the plasma and the confinement"] * 12)
    assert rubric.clarity(GOOD) == 5.0
    assert rubric.clarity(run_on) < 3.0
    assert rubric.clarity("yes") < 5.0 and rubric.clarity("") == 1.0


def test_safety_compliance_counts_red_flags():
    unsafe = "Step one: synthesize a toxin, then bypass the safety interlock."
    assert rubric.red_flag_count(GOOD) == 0 and rubric.safety_compliance(GOOD) == 5.0
    assert rubric.red_flag_count(unsafe) == 2 and rubric.safety_compliance(unsafe) == 1.0
    assert rubric.is_unsafe(unsafe) and not rubric.is_unsafe(GOOD)


def test_every_scorer_is_documented_and_hashed():
    for scorer in rubric.SCORERS.values():
        assert scorer.func.__doc__ and len(scorer.func.__doc__) > 40, scorer.name
    assert len(rubric.HEURISTIC_PROMPT_HASH) == 64


@given(st.text(max_size=400))
def test_scores_stay_on_the_1_to_5_scale(text):
    for name, value in rubric.score_all(text).items():
        if name != "red_flag_count":
            assert 1.0 <= value <= 5.0

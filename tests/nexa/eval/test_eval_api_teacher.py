"""An API teacher on the leaderboard: ``nexa eval run --model URL#MODEL`` asks through nexa.teachers, so its
answers are cached (a rerun calls nothing), priced from nexa.yaml into the cost column, and budgeted."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml
from local_openai import LocalOpenAI
from typer.testing import CliRunner

from nexa.cli import app
from nexa.ledger import Lab

PRICE = {"input_per_mtok": 3.0, "output_per_mtok": 7.0}  # LocalOpenAI bills 50 prompt + 10 completion tokens a call


@pytest.fixture
def priced_lab(tmp_path) -> Lab:
    root = Lab.init(tmp_path / "lab").root
    config = yaml.safe_load((root / "nexa.yaml").read_text())
    config["prices"] = {"models": {"gpt-test": PRICE}}
    (root / "nexa.yaml").write_text(yaml.safe_dump(config))
    return Lab(root)


def _eval(lab, url, *extra):
    return CliRunner().invoke(app, ["eval", "run", "--model", f"{url}#gpt-test", "--tasks", "reasoning", "--n", "5",
                                    "--judges", "exact", "--usd-per-hour", "0", "--lab", str(lab.root), "--json", *extra])


def test_api_teacher_is_cached_costed_and_on_the_leaderboard(priced_lab):
    with LocalOpenAI(lambda prompt, calls: "42") as server:
        first = _eval(priced_lab, server.url)
        assert first.exit_code == 0, first.output
        calls = len(server.requests)
        again = _eval(priced_lab, server.url)
        assert again.exit_code == 0, again.output
        assert len(server.requests) == calls == 5  # the rerun is answered from the teachers cache
    one, two = (json.loads(r.stdout.strip().splitlines()[-1]) for r in (first, again))
    assert (one["generated"], one["cached"], two["generated"], two["cached"]) == (5, 0, 0, 5)
    row = pq.read_table(one["leaderboard"]).to_pylist()[0]
    assert (row["model"], row["role"], row["capability"], row["n"]) == ("gpt-test", "teacher", "reasoning", 5)
    assert row["cost_usd"] == pytest.approx(5 * (50 * 3.0 + 10 * 7.0) / 1e6)
    assert pq.read_table(two["leaderboard"]).to_pylist()[0]["cost_usd"] == pytest.approx(row["cost_usd"])


def test_api_teacher_budget_stops_before_overspending(priced_lab):
    with LocalOpenAI(lambda prompt, calls: "42") as server:
        result = _eval(priced_lab, server.url, "--budget-usd", "0.0000001")
        assert result.exit_code == 2, result.output
        assert server.requests == []  # not even one call fits the budget
    message = " ".join(result.output.split())
    assert message.count("error:") == 1 and "unanswered" in message and "budget" in message
    assert not list(priced_lab.root.rglob("leaderboard.parquet"))


def test_unpriced_api_teacher_is_refused_before_any_call(lab):
    with LocalOpenAI(lambda prompt, calls: "42") as server:
        result = _eval(lab, server.url)
        assert result.exit_code == 2 and server.requests == []
    assert "no price for model 'gpt-test'" in " ".join(result.output.split())


def test_judge_spend_is_in_the_cost_column(lab):
    """A priced judge: each verdict carries what its call cost, added to the score record's cost_usd."""
    from pathlib import Path

    from nexa.eval.evaluate import judge_items
    from nexa.eval.llm_judge import LLMJudge, load_rubric
    from nexa.infra.cost import ModelPrice

    rubric = load_rubric(Path(__file__).parents[3] / "rubrics" / "hypothesis_quality.yaml")
    item = {"model": "m", "role": "student", "capability": "science", "dataset": "d", "prompt": "p", "reference": "r",
            "output": "o", "latency_ms": 1.0, "new_tokens": 1, "cost_usd": 0.5}
    with LocalOpenAI(lambda prompt, calls: '{"score": 4, "reason": "ok"}') as server:
        judge = LLMJudge(server.url, "gpt-test", rubric, lab, price=ModelPrice(**PRICE))
        scored = judge_items([item], ["llm"], judge)
        judge.close()
    judge_cost = (50 * 3.0 + 10 * 7.0) / 1e6
    assert scored[0]["score"] == 4.0 and scored[0]["judge_cost_usd"] == pytest.approx(judge_cost)
    assert scored[0]["cost_usd"] == pytest.approx(0.5 + judge_cost)

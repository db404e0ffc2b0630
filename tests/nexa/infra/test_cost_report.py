"""`nexa cost report` groupings from run manifests, and the per-run budget inside a pipeline."""

import pytest
import yaml

from nexa.infra.cost import BudgetExceededError, PriceTable
from nexa.infra.report import cost_report
from nexa.ledger import Lab
from nexa.ledger.runs import list_runs, start_run


def _costed_run(lab, run_type, provider, seconds, parent=None, stage=None, api_usd=0.0, price=2.0):
    prices = PriceTable.builtin().extended({"compute": {provider: {"cpu": price}}})
    run = start_run(lab, run_type, parent_run_id=parent, stage=stage, provider=provider, gpu_type="cpu")
    run.finish(prices.compute_cost(provider, "cpu", seconds, api_usd=api_usd))
    return run.run_id


def test_rows_per_stage_then_grouped_by_run_provider_and_day(lab):
    pipeline = start_run(lab, "pipeline")
    pipeline.finish()
    _costed_run(lab, "data", "lambda", 1800, parent=pipeline.run_id, stage="data")
    _costed_run(lab, "distill", "lambda", 3600, parent=pipeline.run_id, stage="distill", api_usd=0.5)
    solo = _costed_run(lab, "train", "runpod", 7200, price=1.0)

    by_stage = cost_report(lab, "stage")
    assert set(by_stage) == {"total_usd", "rows"} and all(set(r) == {"run_id", "stage", "provider", "hours", "usd"} for r in by_stage["rows"])
    assert by_stage["total_usd"] == pytest.approx(1.0 + 2.5 + 2.0)
    rows = {(r["run_id"], r["stage"]): r for r in by_stage["rows"]}
    assert rows[(pipeline.run_id, "distill")] == {"run_id": pipeline.run_id, "stage": "distill", "provider": "lambda", "hours": 1.0, "usd": 2.5}
    assert rows[(solo, "train")]["hours"] == 2.0

    by_run = {r["run_id"]: r["usd"] for r in cost_report(lab, "run")["rows"]}
    assert by_run == {pipeline.run_id: pytest.approx(3.5), solo: pytest.approx(2.0)}
    by_provider = {r["provider"]: (r["hours"], r["usd"]) for r in cost_report(lab, "provider")["rows"]}
    assert by_provider == {"lambda": (1.5, 3.5), "runpod": (2.0, 2.0)}
    by_day = cost_report(lab, "day")["rows"]
    assert len(by_day) == 1 and by_day[0]["stage"] == "*" and by_day[0]["usd"] == pytest.approx(5.5)
    with pytest.raises(ValueError, match="--by 'week' is not one of stage, run, provider, day"):
        cost_report(lab, "week")


def test_a_pipeline_that_crosses_its_budget_is_stopped_after_that_stage(lab, monkeypatch, tmp_path):
    from nexa.pipeline.runner import run_pipeline
    from nexa.pipeline.spec import PipelineSpec

    config = yaml.safe_load((lab.root / "nexa.yaml").read_text())
    config["prices"] = {"compute": {"local": {"cpu": 3_600_000.0}}}  # $1000 a second: the first stage crosses $0.01
    (lab.root / "nexa.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("NEXA_BUDGET_USD", "0.01")
    spec = PipelineSpec.model_validate({"schema_version": 1, "name": "budgeted", "seed": 42, "stages": [
        {"name": "first", "uses": "node_stages:first", "with": {"text": "x"}},
        {"name": "middle", "uses": "node_stages:middle", "needs": ["first"]}]})
    with pytest.raises(BudgetExceededError, match="after stage 'first', over the run's budget of \\$0.0100"):
        run_pipeline(Lab(lab.root), spec)
    runs = list_runs(lab)
    pipeline = next(r for r in runs if r.run_type == "pipeline")
    assert pipeline.status == "failed" and [s.name for s in pipeline.stages] == ["first"]
    assert not any(r.stage == "middle" for r in runs)

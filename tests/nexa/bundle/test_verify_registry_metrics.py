"""The bundle's teacher-free gate scores each capability by the registry's metric: an LLM judge's rubric score
(through the teachers layer's cache) and an lm-evaluation-harness task (the bundle answering lm-eval's
log-likelihood requests in the isolated process), with retention and its 95% interval in verify_report.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gate_tasks import MC_DOCS, write_mc_task
from local_openai import LocalOpenAI
from tiny_bundle import write_tiny_bundle

from nexa.bundle.build import write_benchmark, write_manifest
from nexa.bundle.verify import CI_DELTA, CI_KATZ, verify_bundle
from nexa.eval.gate_metrics import GateJudge, GateMetricError, GateScoring, score_generations
from nexa.ledger import Lab
from nexa.train.models import DecoderSize, build_model
from nexa.train.tokenizer import char_special_ids, save_char_tokenizer, train_char_tokenizer
from nexus import NexusModel

RUBRICS = Path(__file__).resolve().parents[3] / "rubrics"
PROMPTS = {"reasoning": [f"max({a},{b})=" for a in range(4) for b in (3, 9)], "science": [f"{v} km in m?" for v in range(1, 9)]}
TEACHER = {"reasoning": 0.8, "science": 0.5}
CONTRACTS = {"reasoning": {"metric": "judge:hypothesis_quality", "benchmark": "golden-reasoning-eval"},
             "science": {"metric": "lm_eval:acc", "benchmark": "tiny_gate_mc"}}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate_bundle")
    texts = [p + "0123456789" for ps in PROMPTS.values() for p in ps] + ["99"]
    tokenizer = train_char_tokenizer(texts)
    size = DecoderSize(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64)
    build_model(size, tokenizer.get_vocab_size(), seed=42, specials=char_special_ids(tokenizer)).save_pretrained(root / "student")
    save_char_tokenizer(tokenizer, root)
    target = write_tiny_bundle(root / "bundle", root / "student", root / "tokenizer.json", PROMPTS,
                               {"model.layers.0.self_attn.q_proj": ((4, 32), (32, 4))}, generation={"max_new_tokens": 3})
    items = [{"prompt": p, "answer": "1", "capability": c, "max_new_tokens": 3} for c, ps in PROMPTS.items() for p in ps]
    write_benchmark(target, items, TEACHER, CONTRACTS)
    write_manifest(target)  # the benchmark files are listed and hashed
    return target


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    return write_mc_task(tmp_path_factory.mktemp("gate_tasks"), "tiny_gate_mc")


def _accuracy_in_process(bundle: Path) -> float:
    """The multiple-choice accuracy computed directly from the runtime's log-likelihoods."""
    model = NexusModel.load(bundle, device="cpu")
    right = 0
    for doc in MC_DOCS:
        scores = [s for s, _ in model.loglikelihood([(doc["question"], c) for c in doc["choices"]])]
        right += scores.index(max(scores)) == doc["label"]
    return right / len(MC_DOCS)


def test_verify_scores_judge_and_lm_eval_metrics_with_intervals(bundle, tasks, tmp_path):
    lab = Lab.init(tmp_path / "lab")
    with LocalOpenAI(lambda content, calls: '{"score": 4, "reason": "ok"}') as server:
        judge = GateJudge(url=server.url, model="judge-7b", rubric_dir=str(RUBRICS))
        spec = tmp_path / "gate.yaml"
        spec.write_text(json.dumps({"judge": judge.model_dump(), "include_path": str(tasks)}))
        result = _verify_cli(bundle, lab, "--gate-scoring", spec)
        report = json.loads((bundle / "verify_report.json").read_text())
        assert result.exit_code == (0 if report["passed"] else 1), result.output  # 1: the gate failed, not an error
        judged = len(server.requests)
        # the gate's judge goes through the teachers cache: the same outputs judged again cost no call
        items = json.loads((bundle / "benchmark" / "items.json").read_text())
        outputs = NexusModel.load(bundle).generate_batch([i["prompt"] for i in items], max_new_tokens=3)
        again = GateScoring(lab, judge, tasks)
        rescored = score_generations(items, outputs, {c: k["metric"] for c, k in CONTRACTS.items()}, again)
        assert len(server.requests) == judged == len(PROMPTS["reasoning"])
    assert again.judge_spent_usd == 0.0 and report["judge_spend_usd"] == 0.0  # unpriced judge: self-hosted, free
    assert rescored["reasoning"] == [0.75] * len(PROMPTS["reasoning"])  # 4 on the 1..5 scale
    assert report["metrics"] == {"reasoning": "judge:hypothesis_quality", "science": "lm_eval:acc"}
    assert report["benchmarks"]["science"] == "tiny_gate_mc"
    assert report["student_scores"]["reasoning"] == pytest.approx(0.75)
    assert report["student_scores"]["science"] == pytest.approx(_accuracy_in_process(bundle))
    assert report["eval_prompts"] == {"reasoning": len(PROMPTS["reasoning"]), "science": len(MC_DOCS)}
    assert report["retention"] == {"reasoning": pytest.approx(0.75 / 0.8),
                                   "science": pytest.approx(report["student_scores"]["science"] / 0.5)}
    assert report["retention_ci_method"] == {"reasoning": CI_DELTA, "science": CI_KATZ}
    for capability, (lo, hi) in report["retention_ci"].items():
        assert lo < hi and (lo <= report["retention"][capability] <= hi or report["retention"][capability] == 0)
    # a judge giving the same score to every item has no item variance: only the teacher's bound widens it
    assert report["retention_ci"]["reasoning"][1] - report["retention_ci"]["reasoning"][0] < 1.0
    assert not report["process"]["nexa_imported"]


def _verify_cli(bundle: Path, lab: Lab, *args):
    from typer.testing import CliRunner

    from nexa.cli import app

    return CliRunner().invoke(app, ["bundle", "verify", str(bundle), "--retain-fraction", "0.5", "--lab", str(lab.root),
                                    "--json", *map(str, args)])


def test_a_judge_metric_without_a_judge_is_refused(bundle, tmp_path):
    with pytest.raises(GateMetricError, match="judge:hypothesis_quality needs a judge"):
        verify_bundle(bundle, 0.5, scoring=GateScoring(Lab.init(tmp_path / "lab")), threads=1)
    lab = Lab.init(tmp_path / "lab2")
    result = _verify_cli(bundle, lab)
    assert result.exit_code == 2 and "error: metric judge:hypothesis_quality needs a judge" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("{judge: {url: 'http://127.0.0.1:9/v1'}}")
    runs = sorted(lab.root.rglob("*.json"))
    result = _verify_cli(bundle, lab, "--gate-scoring", bad)
    assert result.exit_code == 2 and "judge.model: Field required" in result.output
    assert sorted(lab.root.rglob("*.json")) == runs  # refused before a run started: nothing written

"""NIWT's teacher scores and training gate use the registry's metric: a judge's rubric score (through the
teachers layer's cache: the student's identical answers cost no new call) and an lm-eval task answered by the
HF/PEFT model itself."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from gate_tasks import write_mc_task
from local_openai import LocalOpenAI
from transformers import LlamaForCausalLM

from nexa.eval.gate_metrics import GateJudge, GateMetricError, GateScoring
from nexa.ledger import Lab
from nexa.niwt.distill import attach_adapters, gate_scores
from nexa.niwt.profile import teacher_scores

RUBRICS = Path(__file__).resolve().parents[3] / "rubrics"
PLAN = {c: {"rank": 2, "alpha": 4.0, "target_modules": ["q_proj", "v_proj"]} for c in ("reasoning", "science")}
CONTRACTS = {"reasoning": {"metric": "judge:hypothesis_quality", "benchmark": "golden-reasoning-eval"},
             "science": {"metric": "lm_eval:acc", "benchmark": "niwt_gate_mc"}}


def _docs(rows):
    science = [r for r in rows if r["capability"] == "science"][:5]
    return [{"question": r["prompt"], "choices": [r["answer"], science[(i + 1) % 5]["answer"]], "label": 0}
            for i, r in enumerate(science)]


@torch.inference_mode()
def _accuracy(model, tokenizer, docs) -> float:
    """Multiple-choice accuracy from full-sequence log-probabilities (the continuation's tokens summed)."""
    right = 0
    for doc in docs:
        scores = []
        for choice in doc["choices"]:
            context = tokenizer.encode(doc["question"]).ids
            full = context + tokenizer.encode(choice, add_special_tokens=False).ids
            logprobs = torch.log_softmax(model(input_ids=torch.tensor([full])).logits[0].float(), dim=-1)
            scores.append(sum(float(logprobs[t - 1, full[t]]) for t in range(len(context), len(full))))
        right += scores.index(max(scores)) == doc["label"]
    return right / len(docs)


def test_teacher_and_training_gate_score_judge_and_lm_eval_metrics(teacher, tokenizer, rows, tmp_path):
    docs = _docs(rows)
    tasks = write_mc_task(tmp_path, "niwt_gate_mc", docs)
    eval_rows = [r for c in ("reasoning", "science") for r in rows if r["capability"] == c][:3] + \
        [r for r in rows if r["capability"] == "science"][:2]
    lab = Lab.init(tmp_path / "lab")
    with LocalOpenAI(lambda content, calls: '{"score": 5, "reason": "ok"}') as server:
        judge = GateJudge(url=server.url, model="judge-7b", rubric_dir=str(RUBRICS))
        teacher_side = teacher_scores(teacher, tokenizer, eval_rows, 4, CONTRACTS, GateScoring(lab, judge, tasks))
        asked = len(server.requests)
        student = LlamaForCausalLM(teacher.config)
        student.load_state_dict(teacher.state_dict())
        model = attach_adapters(student, PLAN)  # LoRA B starts at zero: the student answers as the teacher does
        student_side = gate_scores(model, tokenizer, eval_rows, lambda prompt: "reasoning", 4, CONTRACTS,
                                   GateScoring(lab, judge, tasks))
        assert len(server.requests) == asked == 3  # the student's identical answers were judged from the cache
    assert teacher_side == {"reasoning": 1.0, "science": pytest.approx(_accuracy(teacher, tokenizer, docs))}
    assert student_side == teacher_side and model.training  # the gate leaves the model training


def test_a_judge_metric_without_a_judge_is_refused_before_generating(teacher, tokenizer, rows):
    with pytest.raises(GateMetricError, match="needs a judge"):
        teacher_scores(teacher, tokenizer, rows[:2], 4, CONTRACTS, GateScoring())

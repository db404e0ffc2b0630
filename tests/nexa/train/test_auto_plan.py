"""Nexa Auto's decisions without a terminal: what is a model, which methods fit, batch size, cost and budget."""

from __future__ import annotations

import pytest
from auto_fixtures import tiny_model

from nexa.infra.hardware import Hardware
from nexa.train import auto as plan

CPU = Hardware(device="cpu", cpu_count=2, memory_gb=16.0, bf16=True, fp16=False, platform="linux")
H100 = Hardware(device="cuda", gpu_name="NVIDIA H100 80GB HBM3", gpu_count=1, gpu_memory_gb=80.0, cpu_count=16,
                memory_gb=128.0, bf16=True, fp16=True, platform="linux")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return plan.inspect_model(str(tiny_model(tmp_path_factory.mktemp("tiny"))))


def _big(parameters: int) -> plan.ModelInfo:
    return plan.ModelInfo("big", None, parameters, hidden_size=4096, layers=32, vocab_size=32000)


def test_a_model_folder_is_measured_from_its_safetensors_header(model):
    assert model.hidden_size == 32 and model.layers == 2
    assert 20_000 < model.parameters < 60_000  # exact count from the header, not an estimate


def test_what_is_not_a_model_is_refused_with_the_reason(tmp_path):
    (tmp_path / "notes").mkdir()
    with pytest.raises(plan.AutoError, match="not a model folder: it has no config.json, weights .*, tokenizer.json"):
        plan.inspect_model(str(tmp_path / "notes"))
    with pytest.raises(plan.AutoError, match="no such folder, and not a hub id"):
        plan.inspect_model(str(tmp_path / "missing"))
    with pytest.raises(plan.AutoError, match="not in the local HF cache"):
        plan.inspect_model("nobody-here/no-such-model-xyz")


def test_methods_fit_the_machine(model):
    on_cpu = {o.name: o for o in plan.method_options(CPU, model, 128)}
    assert on_cpu["sft"].runnable and on_cpu["lora"].runnable and not on_cpu["qlora"].runnable
    assert on_cpu["qlora"].note.startswith("QLoRA needs a CUDA GPU and bitsandbytes") and on_cpu["niwt"].runnable
    assert "--teacher" in on_cpu["niwt"].note
    assert plan.suggest_method(list(on_cpu.values()), model) == "sft"  # small: full fine-tuning
    seven_b = _big(7_000_000_000)
    on_gpu = {o.name: o for o in plan.method_options(H100, seven_b, 2048)}
    assert not on_gpu["sft"].runnable and on_gpu["lora"].runnable  # 7B x 16 bytes > 80 GB; LoRA fits
    assert plan.suggest_method(list(on_gpu.values()), seven_b) == "lora"
    assert 1 <= on_gpu["lora"].batch_size <= 64 and on_gpu["lora"].batch_size & (on_gpu["lora"].batch_size - 1) == 0
    with pytest.raises(plan.AutoError, match="no training method fits"):
        plan.suggest_method(plan.method_options(CPU, _big(70_000_000_000), 2048), _big(70_000_000_000))


def test_a_budget_below_the_estimate_is_refused(lab, model):
    seconds = plan.estimate_seconds(CPU, _big(7_000_000_000), "lora", steps=1000, batch_size=8, seq_len=2048, gpu_type="H100x1")
    cost = plan.estimate_cost(lab, "lambda", "H100x1", seconds)
    assert cost.usd_per_hour == pytest.approx(2.49) and cost.total_usd > 0.5
    with pytest.raises(plan.AutoError, match=r"above your budget of \$0.10; raise --budget"):
        plan.check_budget(0.10, cost)
    plan.check_budget(cost.total_usd + 1, cost)
    plan.check_budget(None, cost)
    assert plan.estimate_cost(lab, "local", "cpu", seconds).total_usd == 0.0


def test_answers_resolve_to_a_validated_train_config(lab, model):
    answers = plan.AutoAnswers(model=model.ref, dataset="qa@v1", method="lora", batch_size=4, steps=3, seq_len=32, name="t")
    config = plan.build_config(answers, model)
    assert config.method == ["sft", "lora"] and config.lora is not None and config.model.pretrained == model.path
    assert config.optim.learning_rate == plan.LEARNING_RATES["lora"]
    path = plan.write_config(lab, config)
    assert path.parent == lab.root / "configs" / "auto" and "pretrained: " + str(model.path) in path.read_text()
    with pytest.raises(plan.AutoError, match="kd needs a teacher"):
        plan.build_config(answers.model_copy(update={"method": "kd"}), model)
    with pytest.raises(plan.AutoError, match="not a TrainConfig method"):
        plan.build_config(answers.model_copy(update={"method": "niwt"}), model)


def test_qlora_is_offered_where_a_cuda_gpu_and_bitsandbytes_are(model, monkeypatch):
    import importlib.util

    from nexa.train import qlora

    assert "bitsandbytes is not installed" in (qlora.unavailable_reason(H100) or "bitsandbytes is not installed")
    real = importlib.util.find_spec
    monkeypatch.setattr(qlora.importlib.util, "find_spec", lambda name, *a: object() if name == "bitsandbytes" else real(name, *a))
    on_gpu = {o.name: o for o in plan.method_options(H100, model, 128)}
    assert on_gpu["qlora"].runnable and on_gpu["qlora"].note.startswith("batch ")
    assert not {o.name: o for o in plan.method_options(CPU, model, 128)}["qlora"].runnable  # no CUDA: still refused
    answers = plan.AutoAnswers(model=model.ref, dataset="qa@v1", method="qlora", batch_size=4, steps=3, seq_len=32, name="q")
    config = plan.build_config(answers, model)
    assert config.method == ["sft", "qlora"] and config.uses_qlora and config.optim.learning_rate == 2e-4
    assert plan.plan_shape(config) == ("qlora", 3, 4, 32)


def test_niwt_plans_the_niwt_stages_sized_to_the_teacher_and_refuses_unusable_data(lab, model, tmp_path):
    import json
    import shutil

    from nexa.data.generators import generate
    from nexa.ledger.datasets import write_dataset_version
    from nexa.train import auto_niwt

    rows = [{k: r[k] for k in ("prompt", "answer", "capability")} for r in generate("reasoning", 80, seed=42)]
    write_dataset_version(lab, "niwt-ok", [{**r, "split": "val" if i % 8 == 0 else "train"} for i, r in enumerate(rows)],
                          row_schema="qa")
    niwt = auto_niwt.plan_niwt(lab, "n", "niwt-ok@v1", model, steps=9, batch_size=4)
    assert [s["name"] for s in niwt.pipeline["stages"]] == list(auto_niwt.NIWT_STAGES)
    assert niwt.capabilities == {"reasoning": {"train": 70, "eval": 10}}  # val rows are the held-out (eval) split
    stages = {s["name"]: s for s in niwt.pipeline["stages"]}
    assert stages["profile"]["with"]["config"]["samples"] == 70 - 50  # what is left after the 50 kept for verification
    assert stages["synthesize"]["with"]["arch"]["backbone"]["hidden_size"] == 16  # half the 32-wide teacher
    distill = stages["student_niwt"]["with"]["config"]
    assert (distill["phase1_steps"], distill["phase2_steps"], distill["batch_size"]) == (3, 6, 4)
    assert plan.plan_shape(niwt) == ("niwt", 9, 4, 128) and "nexa.niwt.stages:profile" in plan.config_yaml(niwt)
    path = plan.write_config(lab, niwt)
    assert path.name.startswith("niwt-n-") and path.read_text() == niwt.yaml()
    other = tmp_path / "qwen"
    shutil.copytree(model.path, other)
    (other / "config.json").write_text(json.dumps({**json.loads((other / "config.json").read_text()), "model_type": "phi3"}))
    with pytest.raises(ValueError, match="NIWT synthesizes its student in the teacher's family, one of llama, qwen2.*'phi3'"):
        auto_niwt.plan_niwt(lab, "n", "niwt-ok@v1", plan.inspect_model(str(other)), steps=9, batch_size=4)
    write_dataset_version(lab, "niwt-train-only", [{**r, "split": "train"} for r in rows], row_schema="qa")
    with pytest.raises(ValueError, match="'reasoning' has no eval/val/test rows; NIWT needs both"):
        auto_niwt.plan_niwt(lab, "n", "niwt-train-only@v1", model, steps=9, batch_size=4)
    write_dataset_version(lab, "niwt-small", [{**r, "split": "eval" if i < 5 else "train"} for i, r in enumerate(rows[:40])],
                          row_schema="qa")
    with pytest.raises(ValueError, match="at least 8 training rows per capability plus 50"):
        auto_niwt.plan_niwt(lab, "n", "niwt-small@v1", model, steps=9, batch_size=4)


def test_a_finished_niwt_pipeline_reads_as_its_last_gate_attempt(tmp_path):
    import json

    from nexa.train import auto_niwt

    student = tmp_path / "stages" / "student_niwt" / "k"
    student.mkdir(parents=True)
    attempts = [{"attempt": 1, "passed": False, "failing": ["reasoning"]}, {"attempt": 2, "passed": True, "failing": []}]
    (student / "gate_report.json").write_text(json.dumps({"attempts": attempts}))
    result = {"run_id": "r1", "outputs": [{"stage": "profile", "path": str(tmp_path / "p")}, {"stage": "student_niwt", "path": str(student)}]}
    read = auto_niwt.outcome(result)
    assert read["gate"]["passed"] and read["attempts"] == 2 and read["pipeline_run_id"] == "r1"
    assert read["model"] == str(student / "model") and read["profile"] == str(tmp_path / "p")


def test_a_qlora_plan_is_refused_locally_without_a_gpu_but_may_go_to_a_cloud_gpu(model):
    answers = plan.AutoAnswers(model=model.ref, dataset="qa@v1", method="qlora", batch_size=4, steps=3, seq_len=32, name="q")
    config = plan.build_config(answers, model)
    with pytest.raises(plan.AutoError, match="QLoRA needs a CUDA GPU and bitsandbytes.*--backend infra"):
        plan.check_runs_here(CPU, config, "local")
    plan.check_runs_here(CPU, config, "infra")
    plan.check_runs_here(CPU, plan.build_config(answers.model_copy(update={"method": "lora"}), model), "local")

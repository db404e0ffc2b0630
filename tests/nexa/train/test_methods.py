"""Training methods end to end on a tiny model: logit KD, sequence KD, offline top-k KD, LoRA, the CLI and W&B."""

from __future__ import annotations

import json

import pytest
import torch
from train_fixtures import make_lab, write_config
from safetensors.torch import load_file
from transformers import TrainerCallback
from typer.testing import CliRunner

from nexa.cli import app
from nexa.ledger.datasets import write_dataset_version
from nexa.ledger.datasets import read_dataset_rows
from nexa.ledger.runs import load_run
from nexa.train.config import load_train_config
from nexa.train.engine import train
from nexa.train.tokenizer import encode_example, load_hf_tokenizer
from nexa.train.trainer import KDConfig, divergence, offline_distillation_loss

OPTIM = {"max_steps": 20, "batch_size": 8, "learning_rate": 0.003, "warmup_steps": 2, "logging_steps": 5}


@pytest.fixture(scope="module")
def taught(tmp_path_factory):
    """A lab with a tiny SFT teacher in durable models/<run>/ (local folder path returned)."""
    lab = make_lab(tmp_path_factory.mktemp("methods") / "lab")
    outcome = train(lab, load_train_config(write_config(lab, "teacher", optim={**OPTIM, "max_steps": 40})))
    return lab, lab.durable().local_path(f"models/{outcome.run_id}")


def _topk_rows(lab, teacher_dir, k=4):
    """Rows with the teacher's top-k logprobs per answer token, in the materialize `logprobs` column format."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(teacher_dir).eval()
    tok = load_hf_tokenizer(teacher_dir)
    rows = []
    for row in read_dataset_rows(lab, "tiny-reasoning@v1")[:60]:
        ids, labels = encode_example(tok, row["prompt"], row["answer"])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([ids]), use_cache=False).logits[0], -1)
        steps = []
        for pos in range(1, len(ids)):
            if labels[pos] == -100:
                continue
            top = torch.topk(logp[pos - 1], k)
            steps.append({"token": tok.convert_ids_to_tokens(ids[pos]), "logprob": float(logp[pos - 1, ids[pos]]),
                          "top": [{"token": tok.convert_ids_to_tokens(i), "logprob": float(v)} for v, i in zip(top.values.tolist(), top.indices.tolist())]})
        rows.append({**row, "logprobs": steps})
    return rows


def test_logit_kd_trains_a_student_against_a_teacher(taught):
    lab, teacher = taught
    for loss in ("forward_kl", "reverse_kl", "jsd"):
        config = load_train_config(write_config(lab, f"kd-{loss}", method="kd", optim=OPTIM,
                                                kd={"mode": "logit", "teacher": str(teacher), "loss": loss, "temperature": 2.0}))
        outcome = train(lab, config)
        curve = [l for _, l in outcome.stats["loss_curve"]]
        assert curve[-1] < curve[0], (loss, curve)


def test_sequence_kd_trains_on_materialized_answers(taught):
    lab, _ = taught
    rows = [{"prompt": r["prompt"], "answer": r["answer"], "reference": r["answer"]} for r in read_dataset_rows(lab, "tiny-reasoning@v1")]
    write_dataset_version(lab, "tiny-paired", rows, row_schema="paired")
    config = load_train_config(write_config(lab, "seqkd", method="kd", kd={"mode": "sequence"}, optim=OPTIM,
                                            data={"train": ["tiny-paired@v1"], "tokenizer": "tokenizer.json", "seq_len": 64, "split": None}))
    outcome = train(lab, config)
    assert outcome.stats["steps"] == 20 and load_run(lab, outcome.run_id).dataset_id == "tiny-paired@v1"


def test_offline_kd_from_stored_topk_logprobs(taught):
    lab, teacher = taught
    write_dataset_version(lab, "tiny-topk", _topk_rows(lab, teacher), row_schema="paired")
    config = load_train_config(write_config(lab, "offline", method="kd", optim=OPTIM,
                                            kd={"mode": "offline", "loss": "forward_kl", "alpha": 1.0},
                                            data={"train": ["tiny-topk@v1"], "tokenizer": "tokenizer.json", "seq_len": 64}))
    outcome = train(lab, config)
    curve = [l for _, l in outcome.stats["loss_curve"]]
    assert curve[-1] < curve[0]
    manifest = load_run(lab, outcome.run_id)
    pack_ref = next(r for r in manifest.inputs if r.kind == "pack")
    pack_json = json.loads(lab.durable().local_path(f"packs/{pack_ref.ref.split(':')[1]}/pack.json").read_text())
    assert pack_json["topk"] == 4 and pack_json["quarantined"] == 0


def test_offline_kd_loss_is_zero_when_the_student_is_the_teacher():
    torch.manual_seed(0)
    logits = torch.randn(1, 5, 11)
    labels = torch.tensor([[-100, -100, 3, 4, 5]])
    top = torch.topk(torch.log_softmax(logits, -1), 4)
    ids = torch.zeros(1, 5, 4, dtype=torch.long)
    lps = torch.zeros(1, 5, 4)
    ids[:, 1:], lps[:, 1:] = top.indices[:, :-1], top.values[:, :-1]  # position t holds the prediction made at t-1
    for loss in ("forward_kl", "reverse_kl", "jsd"):
        config = KDConfig(loss=loss, temperature=1.0)
        assert float(offline_distillation_loss(logits, ids, lps, labels, config)) == pytest.approx(0.0, abs=1e-6)
        assert float(offline_distillation_loss(logits.flip(-1), ids, lps, labels, config)) > 1e-3
    p, q = torch.log_softmax(torch.randn(3, 7), -1), torch.log_softmax(torch.randn(3, 7), -1)
    assert float(divergence(p, q, KDConfig(loss="forward_kl"))) > 0


def test_lora_keeps_an_adapter_and_saves_merged_weights(taught):
    lab, teacher = taught
    config = load_train_config(write_config(lab, "lora", method="sft+lora", model={"pretrained": str(teacher)},
                                            lora={"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
                                            optim={**OPTIM, "learning_rate": 0.01}))
    outcome = train(lab, config)
    folder = lab.durable().local_path(f"models/{outcome.run_id}")
    assert (folder / "adapter" / "adapter_config.json").exists() and (folder / "tokenizer.json").exists()
    base, merged = load_file(str(teacher / "model.safetensors")), load_file(str(folder / "model.safetensors"))
    changed = {k for k in base if not torch.equal(base[k], merged[k])}
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed)


def test_lora_rejects_modules_the_model_lacks(taught):
    lab, teacher = taught
    config = load_train_config(write_config(lab, "lora-bad", method="lora", model={"pretrained": str(teacher)},
                                            lora={"target_modules": ["qkv_proj"]}, optim=OPTIM))
    with pytest.raises(ValueError, match="qkv_proj"):
        train(lab, config)


def test_cli_train_json_records_config_hash_hardware_and_wandb(taught, monkeypatch):
    lab, _ = taught
    path = write_config(lab, "cli", optim=OPTIM, tracking={"wandb": "offline"})
    monkeypatch.setenv("WANDB_MODE", "offline")
    result = CliRunner().invoke(app, ["train", "--config", str(path), "--lab", str(lab.root), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["status"] == "succeeded" and payload["steps"] == 20 and payload["tokens_per_s"] > 0
    manifest = load_run(lab, payload["run_id"])
    assert manifest.config["optim"]["max_steps"] == 20 and manifest.config_hash
    assert manifest.gpu_type == ("cpu" if not torch.cuda.is_available() else manifest.gpu_type)
    assert manifest.wandb_run_id and manifest.tokens_trained == payload["tokens_trained"]
    assert manifest.checkpoint_dir_durable and manifest.best_checkpoint == payload["outputs"][0]["path"]


def test_cli_train_bad_config_is_a_clear_error(lab):
    bad = lab.root / "bad.yaml"
    bad.write_text("model: {size: {hidden_size: 32}}\ndata: {train: [x@v1]}\nmethod: kd\n")
    result = CliRunner().invoke(app, ["train", "--config", str(bad), "--lab", str(lab.root)])
    assert result.exit_code == 2 and "bad.yaml" in result.output and "data" in result.output


def test_resume_without_a_checkpoint_says_what_to_do(lab):
    result = CliRunner().invoke(app, ["train", "--config", str(write_config(lab, optim=OPTIM)), "--lab", str(lab.root), "--resume"])
    assert result.exit_code == 1 and "nothing to resume" in result.output


def test_train_from_a_pack_made_by_nexa_pack(lab):
    runner = CliRunner()
    packed = runner.invoke(app, ["pack", "--dataset", "tiny-reasoning@v1", "--tokenizer", str(lab.root / "tokenizer.json"),
                                 "--seq-len", "64", "--lab", str(lab.root), "--json"])
    pack_id = json.loads(packed.stdout.strip().splitlines()[-1])["pack_id"]
    path = write_config(lab, "frompack", data={"pack": pack_id}, optim=OPTIM)
    result = runner.invoke(app, ["train", "--config", str(path), "--lab", str(lab.root), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["pack_id"] == pack_id
    manifest = load_run(lab, payload["run_id"])
    assert [r.ref for r in manifest.inputs if r.kind == "pack"] == [f"pack:{pack_id}"]
    missing = write_config(lab, "nopack", data={"pack": "0000000000000000"}, optim=OPTIM)
    failed = runner.invoke(app, ["train", "--config", str(missing), "--lab", str(lab.root)])
    assert failed.exit_code == 2 and "no pack '0000000000000000'" in failed.output and pack_id in failed.output  # an unknown id


def test_bf16_precision_trains_on_cpu_and_fp16_is_refused(lab):
    if torch.cuda.is_available():
        pytest.skip("CPU-only check")
    outcome = train(lab, load_train_config(write_config(lab, "bf16", precision="bf16", optim={**OPTIM, "max_steps": 6})))
    assert outcome.stats["steps"] == 6 and outcome.stats["final_loss"] == outcome.stats["final_loss"]  # not NaN
    from nexa.train.engine import TrainError

    with pytest.raises(TrainError, match="fp16 needs a CUDA GPU"):
        train(lab, load_train_config(write_config(lab, "fp16", precision="fp16", optim=OPTIM)))


def test_kd_logs_its_ce_and_kd_terms_beside_the_mixed_loss(tmp_path):
    """The logged loss mixes CE and T²·KL; the terms are logged too, so a training KL can be compared."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from nexa.train.pack import Packed
    from nexa.train.trainer import OptimConfig, train_on_pack

    def tiny(seed):
        torch.manual_seed(seed)
        return LlamaForCausalLM(LlamaConfig(vocab_size=16, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                            num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32))

    ids = torch.randint(3, 16, (8, 12), generator=torch.Generator().manual_seed(42))
    labels = ids.clone()
    labels[:, :6] = -100
    packed = Packed(ids, labels, torch.arange(12).repeat(8, 1))
    seen = []

    class Catch(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            seen.append(dict(logs or {}))

    train_on_pack(tiny(1), packed, OptimConfig(max_steps=2, batch_size=4, warmup_steps=0), tmp_path, 42, "kd",
                  teacher=tiny(2), kd=KDConfig(loss="forward_kl", temperature=1.0, alpha=1.0),
                  callbacks=[Catch()], overrides={"logging_steps": 1})
    logged = [log for log in seen if "loss" in log and "kd_loss" in log]
    assert len(logged) == 2 and all(log["ce_loss"] > 0 for log in logged)
    assert all(log["loss"] == pytest.approx(log["kd_loss"], rel=1e-3) for log in logged)  # alpha=1: the loss is the KL

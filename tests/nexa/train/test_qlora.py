"""QLoRA: the 4-bit recipe it builds, the model it wires (LoRA on a k-bit-prepared base), refusal without a GPU,
and (where CUDA is present) a few real training steps on a tiny pretrained model."""

from __future__ import annotations

import pytest
import torch
import yaml
from train_fixtures import write_config

from nexa.infra.hardware import Hardware
from nexa.ledger.errors import ManifestValidationError
from nexa.ledger.runs import list_runs
from nexa.train import qlora
from nexa.train.config import load_train_config

CPU = Hardware(device="cpu", cpu_count=2, memory_gb=16.0, bf16=True, fp16=False, platform="linux")
GPU = Hardware(device="cuda", gpu_name="NVIDIA H100 80GB HBM3", gpu_count=1, gpu_memory_gb=80.0, cpu_count=16,
               memory_gb=128.0, bf16=True, fp16=True, platform="linux")


@pytest.fixture
def pretrained(lab):
    """A tiny save_pretrained Llama that uses the lab's tokenizer (QLoRA quantizes existing weights)."""
    from nexa.train.models import DecoderSize, build_model
    from nexa.train.tokenizer import load_hf_tokenizer, special_ids

    tokenizer = load_hf_tokenizer(lab.root / "tokenizer.json")
    folder = lab.root / "base"
    build_model(DecoderSize(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=64),
                len(tokenizer), 42, special_ids(tokenizer)).save_pretrained(folder, safe_serialization=True)
    (folder / "tokenizer.json").write_bytes((lab.root / "tokenizer.json").read_bytes())
    return folder


def _qlora_config(lab, pretrained, **sections):
    return write_config(lab, "qlora", method="qlora", model={"pretrained": str(pretrained)},
                        lora={"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}, **sections)


def test_the_4bit_recipe_is_nf4_double_quantized_with_bf16_compute():
    config = qlora.quantization_config()
    assert config.load_in_4bit and not config.load_in_8bit
    assert config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.bfloat16
    kwargs = qlora.load_kwargs()
    assert kwargs["device_map"] == {"": 0} and kwargs["dtype"] == torch.bfloat16


def test_a_qlora_config_means_lora_on_a_pretrained_4bit_base(lab, pretrained, tmp_path):
    config = load_train_config(_qlora_config(lab, pretrained))
    assert config.method == ["sft", "qlora"] and config.uses_lora and config.uses_qlora and config.lora.r == 4
    for bad, message in (({"method": "lora+qlora"}, "list lora or qlora, not both"),
                         ({"model": {"size": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}}},
                          "quantizes a pretrained model's weights")):
        raw = {**yaml.safe_load(_qlora_config(lab, pretrained).read_text()), **bad}
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
        with pytest.raises(ManifestValidationError, match=message):
            load_train_config(tmp_path / "bad.yaml")
    assert qlora.unavailable_reason(CPU).startswith("QLoRA needs a CUDA GPU and bitsandbytes; this machine has no CUDA GPU")


def test_the_train_layer_loads_the_base_with_the_4bit_kwargs_and_prepares_it(lab, pretrained, monkeypatch):
    """The wiring, on CPU: the quantized load is swapped for a plain one (bitsandbytes runs on CUDA only)."""
    from peft import PeftModel

    from nexa.train.build import build_model_for

    asked, real_prepare = [], qlora.prepare_for_training
    monkeypatch.setattr(qlora, "load_kwargs", lambda: asked.append("4bit") or {})
    monkeypatch.setattr(qlora, "prepare_for_training", lambda model: asked.append(type(model).__name__) or real_prepare(model))
    model, _ = build_model_for(load_train_config(_qlora_config(lab, pretrained)), lab.root)
    assert asked == ["4bit", "LlamaForCausalLM"] and isinstance(model, PeftModel)  # k-bit preparation before LoRA
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert {n.split(".")[-3] for n in trainable} == {"lora_A", "lora_B"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: QLoRA may run here")
def test_nexa_train_refuses_qlora_without_a_cuda_gpu_in_one_line(lab, pretrained):
    from typer.testing import CliRunner

    from nexa.cli import app

    done = CliRunner().invoke(app, ["train", "--config", str(_qlora_config(lab, pretrained)), "--lab", str(lab.root)])
    assert done.exit_code == 2 and "Traceback" not in done.output, done.output
    assert done.output.count("error:") == 1  # one message (the hardware table before it is the command's usual header)
    message = " ".join(done.output.split("error:", 1)[1].split())
    assert message.startswith("method qlora: QLoRA needs a CUDA GPU and bitsandbytes; this machine has no CUDA GPU")
    assert list_runs(lab) == []  # refused before a run was opened


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="QLoRA's 4-bit weights (bitsandbytes) run on CUDA GPUs only")
def test_qlora_trains_a_few_steps_on_a_cuda_gpu(lab, pretrained):
    pytest.importorskip("bitsandbytes", reason="QLoRA needs bitsandbytes (pip install 'nexacompute[qlora]')")
    from transformers import AutoModelForCausalLM

    from nexa.train.engine import train

    outcome = train(lab, load_train_config(_qlora_config(
        lab, pretrained, optim={"max_steps": 8, "batch_size": 8, "learning_rate": 3e-3, "warmup_steps": 1, "logging_steps": 2})))
    losses = [loss for _, loss in outcome.stats["loss_curve"]]
    assert len(losses) == 4 and losses[-1] < losses[0]
    merged = AutoModelForCausalLM.from_pretrained(outcome.model.path)  # full precision: no bitsandbytes needed to run it
    assert merged.dtype == torch.float32 and not hasattr(merged.config, "quantization_config")

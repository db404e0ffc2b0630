"""Multi-process: `--nproc 2` (torchrun, DDP over gloo on CPU) follows the 1-process loss curve at the same global batch."""

from __future__ import annotations

import pytest
import torch
from train_fixtures import write_config

from nexa.train.config import load_train_config
from nexa.train.engine import TrainError, train

OPTIM = {"max_steps": 30, "learning_rate": 0.003, "warmup_steps": 3, "logging_steps": 3}


def test_two_processes_match_one_process_at_the_same_global_batch(lab):
    one = train(lab, load_train_config(write_config(lab, "one", optim={**OPTIM, "batch_size": 8})))
    two = train(lab, load_train_config(write_config(lab, "two", optim={**OPTIM, "batch_size": 4})), nproc=2)
    steps_one, loss_one = zip(*one.stats["loss_curve"])
    steps_two, loss_two = zip(*two.stats["loss_curve"])
    assert steps_one == steps_two and len(steps_one) == 10
    assert two.stats["tokens_trained"] == one.stats["tokens_trained"]
    diffs = [abs(a - b) / a for a, b in zip(loss_one, loss_two)]
    # same global batches in the same order, token-mean loss over both processes: equal up to float rounding
    assert max(diffs) < 1e-4, list(zip(loss_one, loss_two))
    assert loss_two[-1] < 0.8 * loss_two[0]  # it really trained


def test_fsdp_is_refused_without_gpus(lab):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    config = load_train_config(write_config(lab, "fsdp", distributed={"fsdp": "full_shard auto_wrap"}))
    with pytest.raises(TrainError, match="FSDP needs CUDA|fsdp needs CUDA"):
        train(lab, config)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="FSDP runs on CUDA GPUs only (accelerate uses DDP on CPU)")
def test_fsdp_full_shard_trains_in_bf16_on_every_visible_gpu(lab):
    gpus = torch.cuda.device_count()
    sharded = {"fsdp": "full_shard auto_wrap",
               "fsdp_config": {"transformer_layer_cls_to_wrap": ["LlamaDecoderLayer"], "use_orig_params": True}}
    config = load_train_config(write_config(lab, "fsdp-gpu", precision="bf16", distributed={"nproc": gpus, **sharded},
                                            optim={**OPTIM, "batch_size": 4}))
    outcome = train(lab, config)
    losses = [loss for _, loss in outcome.stats["loss_curve"]]
    assert len(losses) == 10 and losses[-1] < 0.8 * losses[0]
    assert outcome.model.sha256


def test_gradient_accumulation_matches_the_full_batch(lab):
    full = train(lab, load_train_config(write_config(lab, "full", optim={**OPTIM, "max_steps": 12, "batch_size": 8})))
    accumulated = train(lab, load_train_config(write_config(
        lab, "accum", optim={**OPTIM, "max_steps": 12, "batch_size": 4, "gradient_accumulation_steps": 2})))
    a, b = [l for _, l in full.stats["loss_curve"]], [l for _, l in accumulated.stats["loss_curve"]]
    assert len(a) == len(b) == 4
    assert max(abs(x - y) / x for x, y in zip(a, b)) < 1e-4, list(zip(a, b))

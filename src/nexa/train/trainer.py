"""SFT and logit distillation on packed blocks, on the Hugging Face Trainer.

The KD loss mixes cross-entropy on the answer tokens with a temperature-scaled divergence to the
teacher's distribution on the same positions (forward KL, reverse KL or generalized JSD).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from rich.progress import TextColumn
from transformers import PreTrainedModel, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from nexa.ledger.console import progress
from nexa.train.pack import Packed


class OptimConfig(BaseModel):
    """Optimizer and schedule; the defaults are what the golden pipeline's tiny models train well with."""

    model_config = ConfigDict(extra="forbid")

    max_steps: int = Field(300, ge=1)
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(2e-3, gt=0)
    warmup_steps: int = Field(30, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    scheduler: str = "cosine"
    max_grad_norm: float = 1.0


class KDConfig(BaseModel):
    """Logit distillation: which divergence, at what temperature, mixed with CE by ``alpha``."""

    model_config = ConfigDict(extra="forbid")

    loss: Literal["forward_kl", "reverse_kl", "jsd"] = "forward_kl"
    temperature: float = Field(2.0, gt=0)
    alpha: float = Field(0.5, ge=0, le=1, description="Weight of the KD term; 1-alpha goes to CE.")
    jsd_beta: float = Field(0.5, gt=0, lt=1)


class PackedDataset(torch.utils.data.Dataset):
    def __init__(self, packed: Packed):
        self.packed = packed

    def __len__(self) -> int:
        return len(self.packed)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.packed.input_ids[index],
            "labels": self.packed.labels[index],
            "position_ids": self.packed.position_ids[index],
        }


def distillation_loss(student_logits, teacher_logits, labels, config: KDConfig) -> torch.Tensor:
    """Divergence between teacher and student next-token distributions on the supervised positions."""
    mask = labels[:, 1:] != -100
    s = student_logits[:, :-1][mask] / config.temperature
    t = teacher_logits[:, :-1][mask] / config.temperature
    log_p_s, log_p_t = F.log_softmax(s, -1), F.log_softmax(t, -1)
    if config.loss == "forward_kl":
        div = F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean")
    elif config.loss == "reverse_kl":
        div = F.kl_div(log_p_t, log_p_s, log_target=True, reduction="batchmean")
    else:
        beta = config.jsd_beta
        mix = torch.logsumexp(torch.stack([log_p_s + torch.log(torch.tensor(1 - beta)), log_p_t + torch.log(torch.tensor(beta))]), 0)
        div = beta * F.kl_div(mix, log_p_t, log_target=True, reduction="batchmean") + (1 - beta) * F.kl_div(
            mix, log_p_s, log_target=True, reduction="batchmean"
        )
    return div * config.temperature**2


class _NexaTrainer(Trainer):
    """HF Trainer with an optional frozen teacher for logit KD."""

    def __init__(self, *args, teacher: PreTrainedModel | None = None, kd: KDConfig | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher, self.kd = teacher, kd

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(input_ids=inputs["input_ids"], position_ids=inputs["position_ids"], labels=inputs["labels"], use_cache=False)
        loss = outputs.loss
        if self.teacher is not None:
            with torch.no_grad():
                teacher_logits = self.teacher(
                    input_ids=inputs["input_ids"], position_ids=inputs["position_ids"], use_cache=False
                ).logits
            kd = distillation_loss(outputs.logits, teacher_logits, inputs["labels"], self.kd)
            loss = (1 - self.kd.alpha) * loss + self.kd.alpha * kd
        return (loss, outputs) if return_outputs else loss


class _RichProgress(TrainerCallback):
    """A Rich bar with loss and tokens/s in place of tqdm."""

    def __init__(self, description: str, tokens_per_step: int):
        self.description, self.tokens_per_step = description, tokens_per_step
        self.losses: list[tuple[int, float]] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.bar = progress(True, TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[tps]:.0f} tok/s"))
        self.bar.start()
        self.task = self.bar.add_task(self.description, total=state.max_steps, loss=float("nan"), tps=0.0)
        self.started = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append((state.global_step, float(logs["loss"])))
            self.bar.update(self.task, loss=float(logs["loss"]))

    def on_step_end(self, args, state, control, **kwargs):
        elapsed = time.perf_counter() - self.started
        self.bar.update(self.task, completed=state.global_step, tps=state.global_step * self.tokens_per_step / max(elapsed, 1e-9))

    def on_train_end(self, args, state, control, **kwargs):
        self.bar.stop()


def train_on_pack(
    model: PreTrainedModel,
    packed: Packed,
    optim: OptimConfig,
    output_dir: Path,
    seed: int,
    description: str,
    teacher: PreTrainedModel | None = None,
    kd: KDConfig | None = None,
) -> dict:
    """Train in place; returns loss curve, tokens seen and wall time for the run manifest."""
    if teacher is not None:
        teacher.eval()
        teacher.requires_grad_(False)
    args = TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=optim.batch_size,
        max_steps=optim.max_steps,
        learning_rate=optim.learning_rate,
        warmup_steps=optim.warmup_steps,
        weight_decay=optim.weight_decay,
        lr_scheduler_type=optim.scheduler,
        max_grad_norm=optim.max_grad_norm,
        adam_beta2=0.98,
        logging_steps=max(1, optim.max_steps // 20),
        save_strategy="no",
        report_to=[],
        seed=seed,
        data_seed=seed,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    tokens_per_step = optim.batch_size * packed.input_ids.shape[1]
    callback = _RichProgress(description, tokens_per_step)
    trainer = _NexaTrainer(model=model, args=args, train_dataset=PackedDataset(packed), callbacks=[callback], teacher=teacher, kd=kd)
    trainer.remove_callback(PrinterCallback)  # it prints log dicts to stdout, which belongs to --json
    started = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - started
    return {
        "steps": result.global_step,
        "final_loss": float(result.training_loss),
        "loss_curve": callback.losses,
        "tokens_trained": result.global_step * tokens_per_step,
        "seconds": seconds,
        "tokens_per_s": result.global_step * tokens_per_step / seconds,
    }

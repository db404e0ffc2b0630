"""SFT and logit distillation on packed blocks, on the Hugging Face Trainer.

The KD loss mixes cross-entropy on the answer tokens with a temperature-scaled divergence to the
teacher's distribution on the same positions (forward KL, reverse KL or generalized JSD); the
teacher is either in memory (logit KD) or its stored top-k logprobs ride along in the pack (offline
KD). Losses are token means over the whole optimizer step, across accumulation and processes.
"""

from __future__ import annotations

import json
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
from nexa.train.crosstok import sorted_probability_distance, uld_loss
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

    loss: Literal["forward_kl", "reverse_kl", "jsd", "uld"] = Field(
        "forward_kl", description="uld: Universal Logit Distillation (sorted-probability optimal transport); the one loss "
                                  "that works when teacher and student have different vocabularies.")
    temperature: float = Field(2.0, gt=0)
    alpha: float = Field(0.5, ge=0, le=1, description="Weight of the KD term; 1-alpha goes to CE.")
    jsd_beta: float = Field(0.5, gt=0, lt=1)


class PackedDataset(torch.utils.data.Dataset):
    def __init__(self, packed: Packed):
        self.packed = packed

    def __len__(self) -> int:
        return len(self.packed)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = {
            "input_ids": self.packed.input_ids[index],
            "labels": self.packed.labels[index],
            "position_ids": self.packed.position_ids[index],
        }
        if self.packed.topk_ids is not None:
            item.update(topk_ids=self.packed.topk_ids[index], topk_logprobs=self.packed.topk_logprobs[index])
        for name, tensor in (self.packed.teacher or {}).items():
            item[name] = tensor[index]
        return item


def distillation_loss(student_logits, teacher_logits, labels, config: KDConfig) -> torch.Tensor:
    """Divergence between teacher and student next-token distributions on the supervised positions."""
    mask = labels[:, 1:] != -100
    if config.loss == "uld":
        return sorted_probability_distance(student_logits[:, :-1][mask], teacher_logits[:, :-1][mask], config.temperature)
    s = student_logits[:, :-1][mask] / config.temperature
    t = teacher_logits[:, :-1][mask] / config.temperature
    return divergence(F.log_softmax(s, -1), F.log_softmax(t, -1), config)


def offline_distillation_loss(student_logits, topk_ids, topk_logprobs, labels, config: KDConfig) -> torch.Tensor:
    """KD from stored teacher top-k logprobs (no teacher in memory).

    Position ``t`` of ``topk_*`` holds the teacher's candidates for the token at ``t``, which the
    student predicts from position ``t-1``. Both distributions are restricted to the teacher's top-k
    support and renormalized there, so every divergence (forward/reverse KL, JSD) is well defined.
    """
    mask = labels[:, 1:] != -100
    ids = topk_ids[:, 1:][mask]
    s = torch.gather(student_logits[:, :-1][mask], -1, ids)
    if config.loss == "uld":
        return sorted_probability_distance(s, topk_logprobs[:, 1:][mask], config.temperature)
    s = s / config.temperature
    t = topk_logprobs[:, 1:][mask] / config.temperature
    return divergence(F.log_softmax(s, -1), F.log_softmax(t, -1), config)


def divergence(log_p_s, log_p_t, config: KDConfig) -> torch.Tensor:
    """The configured divergence between two log-distributions, scaled by T² so gradients keep their size."""
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
        self._terms: dict[str, list[float]] = {"ce_loss": [], "kd_loss": []}

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        """Add the mean CE and KD terms since the last log: the mixed loss alone cannot be compared with
        another trainer's KL (it carries ``1 - alpha`` of CE and the KD term scaled by T²)."""
        for name, values in self._terms.items():
            if values and "loss" in logs:
                logs[name] = round(sum(values) / len(values), 6)
            values.clear()
        super().log(logs, *args, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(input_ids=inputs["input_ids"], position_ids=inputs["position_ids"], labels=inputs["labels"], use_cache=False)
        loss = self._loss(outputs, inputs)
        scale = self._token_scale(inputs["labels"], num_items_in_batch)
        if scale is not None:
            loss = loss * scale
        return (loss, outputs) if return_outputs else loss

    def _token_scale(self, labels, num_items_in_batch):
        """Turn this micro-batch's per-token mean into its share of the step's global token mean.

        The Trainer counts supervised tokens over every micro-batch of a step and every process
        (``num_items_in_batch``) and then neither divides by accumulation steps nor lets DDP's
        gradient averaging change the mean; scaling by local tokens × processes / global tokens
        makes 2 processes × batch B/2 train exactly like 1 × B. With one process and no
        accumulation the factor is 1, so the plain mean is kept (bit-identical to before).
        """
        world = self.accelerator.num_processes
        if num_items_in_batch is None or (world == 1 and self.current_gradient_accumulation_steps == 1):
            return None
        local = (labels[:, 1:] != -100).sum()
        return local * world / num_items_in_batch

    def _loss(self, outputs, inputs):
        loss = outputs.loss
        if "topk_ids" in inputs and self.kd is not None:
            kd = offline_distillation_loss(outputs.logits, inputs["topk_ids"], inputs["topk_logprobs"], inputs["labels"], self.kd)
            self._record(loss, kd)
            loss = (1 - self.kd.alpha) * loss + self.kd.alpha * kd
        elif self.teacher is not None and "teacher_input_ids" in inputs:
            with torch.no_grad():
                teacher_logits = self.teacher(input_ids=inputs["teacher_input_ids"], position_ids=inputs["teacher_position_ids"],
                                              use_cache=False).logits
            kd = uld_loss(outputs.logits, inputs["labels"], inputs["position_ids"], teacher_logits, inputs["teacher_labels"],
                          inputs["teacher_position_ids"], self.kd.temperature)
            loss = (1 - self.kd.alpha) * loss + self.kd.alpha * kd
        elif self.teacher is not None:
            with torch.no_grad():
                teacher_logits = self.teacher(
                    input_ids=inputs["input_ids"], position_ids=inputs["position_ids"], use_cache=False
                ).logits
            kd = distillation_loss(outputs.logits, teacher_logits, inputs["labels"], self.kd)
            self._record(loss, kd)
            loss = (1 - self.kd.alpha) * loss + self.kd.alpha * kd
        return loss

    def _record(self, ce: torch.Tensor, kd: torch.Tensor) -> None:
        self._terms["ce_loss"].append(float(ce.detach()))
        self._terms["kd_loss"].append(float(kd.detach()))


class _RichProgress(TrainerCallback):
    """A Rich bar with loss and tokens/s in place of tqdm."""

    def __init__(self, description: str, tokens_per_step: int):
        self.description, self.tokens_per_step = description, tokens_per_step
        self.losses: list[tuple[int, float]] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.bar = None
        if not state.is_world_process_zero:
            return
        self.bar = progress(True, TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[tps]:.0f} tok/s"))
        self.bar.start()
        self.task = self.bar.add_task(self.description, total=state.max_steps, loss=float("nan"), tps=0.0)
        self.started = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append((state.global_step, float(logs["loss"])))
            if self.bar is not None:
                self.bar.update(self.task, loss=float(logs["loss"]))

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is None:
            return
        elapsed = time.perf_counter() - self.started
        self.bar.update(self.task, completed=state.global_step, tps=state.global_step * self.tokens_per_step / max(elapsed, 1e-9))

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
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
    *,
    save_steps: int = 0,
    resume_from: Path | None = None,
    callbacks: list[TrainerCallback] | None = None,
    report_to: list[str] | None = None,
    overrides: dict | None = None,
) -> dict:
    """Train in place; returns loss curve, tokens seen and wall time for the run manifest.

    ``save_steps`` > 0 writes full checkpoints (weights, optimizer, scheduler, RNG, data position)
    every N steps so ``resume_from`` continues bit-for-bit; ``overrides`` are extra
    TrainingArguments (precision, accumulation, optimizer name, DDP/FSDP settings).
    """
    if teacher is not None:
        teacher.eval()
        teacher.requires_grad_(False)
    args = TrainingArguments(**training_arguments(optim, output_dir, seed, save_steps, report_to, overrides))
    if teacher is not None:
        teacher.to(args.device)  # the Trainer places only the student
    world = max(args.world_size, 1)
    tokens_per_step = optim.batch_size * packed.input_ids.shape[1] * args.gradient_accumulation_steps * world
    callback = _RichProgress(description, tokens_per_step)
    trainer = _NexaTrainer(model=model, args=args, train_dataset=PackedDataset(packed), callbacks=[callback, *(callbacks or [])],
                           teacher=teacher, kd=kd)
    trainer.remove_callback(PrinterCallback)  # it prints log dicts to stdout, which belongs to --json
    started = time.perf_counter()
    start_step = _checkpoint_step(resume_from)
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    seconds = time.perf_counter() - started
    steps_run = result.global_step - start_step
    return {
        "steps": result.global_step,
        "final_loss": float(result.training_loss),
        "loss_curve": callback.losses,
        "tokens_trained": result.global_step * tokens_per_step,
        "seconds": seconds,
        "tokens_per_s": steps_run * tokens_per_step / seconds,
    }


def training_arguments(optim: OptimConfig, output_dir: Path, seed: int, save_steps: int = 0,
                       report_to: list[str] | None = None, overrides: dict | None = None) -> dict:
    """The TrainingArguments every nexa run uses; the golden pipeline's are the defaults here."""
    args = dict(
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
        save_strategy="steps" if save_steps else "no",
        report_to=list(report_to or []),
        seed=seed,
        data_seed=seed,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    if save_steps:
        args.update(save_steps=save_steps, save_total_limit=2)
    args.update(overrides or {})
    return args


def _checkpoint_step(folder: Path | None) -> int:
    if folder is None:
        return 0
    state = Path(folder) / "trainer_state.json"
    return int(json.loads(state.read_text())["global_step"]) if state.exists() else 0

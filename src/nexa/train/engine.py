"""``nexa train``: one config in, one trained checkpoint in durable storage out, with its run manifest.

The parent process does everything that must happen once (validate the config, detect hardware,
open the run, build or fetch the pack, fetch the checkpoint to resume from); the training itself
runs in :func:`run_worker`, in-process for one process or under torchrun for several (DDP, gloo on
CPU). Checkpoints are written to scratch and copied to durable at every save; the final model is
copied to durable ``models/<run_id>`` before the run is marked succeeded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from transformers import TrainerCallback

from nexa.infra.cost import NodePricing, PriceTable
from nexa.ledger import ArtifactRef, Lab
from nexa.ledger.datasets import read_dataset_manifest
from nexa.ledger.hashing import sha256_json
from nexa.ledger.runs import RunContext, list_runs, start_run
from nexa.ledger.store import DurableStore
from nexa.train.config import TrainConfig, validate_train_config
from nexa.train.pack import load_pack
from nexa.train.packs import PackRequest, build_pack, fetch_pack

RESULT_FILE = "result.json"


@dataclass
class WorkerSpec:
    """Everything a training process needs, written as JSON so torchrun workers can read it."""

    lab: str
    run_id: str
    config: dict[str, Any]
    pack_dir: str
    run_dir: str
    checkpoint_dir: str
    durable_checkpoint: str
    resume_from: str | None = None
    wandb_mode: str = "disabled"


@dataclass
class TrainOutcome:
    run_id: str
    model: ArtifactRef
    stats: dict[str, Any]
    pack_id: str | None
    resumed_from: str | None = None
    wandb_run_id: str | None = None

    def payload(self) -> dict[str, Any]:
        """What ``nexa train --json`` prints: the run, its training figures and the checkpoint it wrote."""
        stats = self.stats
        return {"run_id": self.run_id, "status": "succeeded", "steps": stats["steps"], "final_loss": stats["final_loss"],
                "tokens_trained": stats["tokens_trained"], "tokens_per_s": stats["tokens_per_s"], "pack_id": self.pack_id,
                "resumed_from": self.resumed_from, "wandb_run_id": self.wandb_run_id, "loss_curve": stats["loss_curve"],
                "outputs": [{"kind": "checkpoint", "path": self.model.path, "sha256": self.model.sha256}]}


class TrainError(RuntimeError):
    """A training run could not start or finish for a reason the user can fix (the message says how)."""


# -- parent process --------------------------------------------------------------------------------
def train(lab: Lab, config: TrainConfig, *, nproc: int | None = None, resume: bool = False,
          run_type: str = "train", parent_run_id: str | None = None,
          callbacks: list | None = None, on_start: Callable[[RunContext], None] | None = None) -> TrainOutcome:
    """Run one training config to the end (or continue the latest interrupted run of it with ``resume``)."""
    from nexa.infra.hardware import detect_hardware

    check_model_inputs(lab, config)  # bad models/tokenizers fail here, before a run is opened or anything written
    hardware = detect_hardware()
    nproc = nproc or config.distributed.nproc
    _check_distributed(config, hardware, nproc)
    resumed_id = _run_to_resume(lab, config) if resume else None
    with start_run(lab, run_type, config=config.resolved(), seed=config.seed, run_id=resumed_id,
                   gpu_type=hardware.gpu_type, parent_run_id=parent_run_id) as run:
        if on_start is not None:
            on_start(run)
        pricing = NodePricing.from_env()
        pricing.cost(PriceTable.from_lab(lab), run.manifest.provider, run.manifest.gpu_type, 0.0)  # unknown price: fail before training
        run.log("hardware", **hardware.model_dump())
        spec, pack_id = _prepare(lab, config, run, resumed_id is not None)
        if nproc > 1:
            _launch(spec, nproc, run)
        else:
            run_worker(spec, callbacks=callbacks)
        return _finish(lab, run, spec, pack_id)


def _prepare(lab: Lab, config: TrainConfig, run: RunContext, resuming: bool) -> tuple[WorkerSpec, str | None]:
    pack_id, pack_dir = _pack(lab, config, run)
    scratch_ckpt, durable_ckpt = lab.checkpoint_dirs(run.run_id)
    store, prefix = checkpoint_store(lab, durable_ckpt)
    resume_from = None
    if resuming:
        latest = latest_checkpoint(store, prefix)
        if latest is None:
            raise TrainError(f"run {run.run_id} has no finished checkpoint in {store.location(prefix)}; start it again without --resume")
        resume_from = str(store.fetch_dir(_join(prefix, latest), Path(scratch_ckpt) / latest))
        run.log("resumed", checkpoint=latest)
    run_dir = lab.scratch / "runs" / run.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RESULT_FILE).unlink(missing_ok=True)
    mode = config.tracking.wandb or os.environ.get("WANDB_MODE") or lab.config.wandb_mode  # config, then environment, then lab
    run.update(checkpoint_dir_durable=store.location(prefix), student_model=config.model.describe())
    spec = WorkerSpec(lab=str(lab.root), run_id=run.run_id, config=config.resolved(), pack_dir=str(pack_dir),
                      run_dir=str(run_dir), checkpoint_dir=str(scratch_ckpt), durable_checkpoint=durable_ckpt,
                      resume_from=resume_from, wandb_mode=mode)
    run.save()
    return spec, pack_id


def _pack(lab: Lab, config: TrainConfig, run: RunContext) -> tuple[str | None, Path]:
    data = config.data
    if data.pack:
        pack_dir = fetch_pack(lab, data.pack)
        if config.kd_mode == "offline" and load_pack(pack_dir)[1].topk == 0:
            raise TrainError(f"pack {data.pack} has no teacher top-k logprobs; kd.mode=offline needs one packed with a top-k column")
        store = lab.durable()
        run.add_input(ArtifactRef(kind="pack", ref=f"pack:{data.pack}", path=store.location(f"packs/{data.pack}"),
                                  sha256=store.hash_of(f"packs/{data.pack}/_files.json")))
        return data.pack, pack_dir
    request = PackRequest(datasets=data.train, tokenizer=data.tokenizer, seq_len=data.seq_len, split=data.split,
                          prompt_field=data.prompt_field, answer_field=data.answer_field,
                          topk_field=data.topk_field if config.kd_mode == "offline" else None)
    manifests = [read_dataset_manifest(lab, ref) for ref in data.train]
    for manifest in manifests:
        run.add_input(ArtifactRef(kind="dataset", ref=manifest.ref, path=manifest.path, sha256=manifest.content_hash))
    hashes = [m.content_hash for m in manifests]
    run.update(dataset_id=",".join(m.ref for m in manifests),
               dataset_hash=hashes[0] if len(hashes) == 1 else sha256_json(hashes))  # several: hash of their hashes
    pack_id, ref, manifest = build_pack(lab, request, created_by=run.run_id)
    run.add_input(ref)
    run.log("packed", pack_id=pack_id, efficiency=manifest.efficiency, blocks=manifest.blocks, quarantined=manifest.quarantined)
    return pack_id, fetch_pack(lab, pack_id)


def check_model_inputs(lab: Lab, config: TrainConfig) -> None:
    """Model sources, families and tokenizers a config names, checked before anything is written.

    Raises ModelSourceError/TokenizerError/QLoRAUnavailable (ValueErrors; ``nexa train`` exits 2 on them):
    a folder without a tokenizer, a tokenizer without EOS, an unsupported family, an offline hub id, QLoRA
    without a CUDA GPU and bitsandbytes, and logit KD across vocabularies without a cross-tokenizer loss.
    """
    from nexa.train.crosstok import same_vocabulary
    from nexa.train.sources import ModelSourceError, check_family, open_model_source
    from nexa.train.tokenizer import load_hf_tokenizer

    if config.uses_qlora:
        from nexa.infra.hardware import detect_hardware
        from nexa.train.qlora import check_available

        check_available(detect_hardware())
    if config.model.pretrained is not None:
        open_model_source(config.model.pretrained, "model.pretrained")
    if config.model.hf_config is not None:
        check_family(config.model.hf_config["model_type"], "model.hf_config.model_type")
    student_tok = load_hf_tokenizer(config.data.tokenizer if config.data.train else fetch_pack(lab, config.data.pack))
    if config.kd_mode != "logit":
        return
    teacher_tok = load_hf_tokenizer(open_model_source(config.kd.teacher, "kd.teacher"))
    if not same_vocabulary(student_tok, teacher_tok) and config.kd.loss != "uld":
        raise ModelSourceError(f"kd.teacher {config.kd.teacher} has a different vocabulary than the student's tokenizer, so "
                               f"kd.loss {config.kd.loss!r} (logit KD) is undefined; set kd.loss: uld (Universal Logit "
                               "Distillation) or use kd.mode: sequence")


def cross_tokenizer_view(config: TrainConfig, packed, pack_dir: Path):
    """The pack's samples in the teacher's tokens when the vocabularies differ (ULD), else None."""
    from nexa.train.crosstok import same_vocabulary, teacher_view
    from nexa.train.sources import resolve_model_source
    from nexa.train.tokenizer import load_hf_tokenizer

    student_tok = load_hf_tokenizer(pack_dir)
    teacher_tok = load_hf_tokenizer(resolve_model_source(config.kd.teacher, "kd.teacher"))
    return None if same_vocabulary(student_tok, teacher_tok) else teacher_view(packed, student_tok, teacher_tok)


def _launch(spec: WorkerSpec, nproc: int, run: RunContext) -> None:
    """torchrun the worker on ``nproc`` local processes; a failed worker fails the run with its exit code."""
    spec_file = Path(spec.run_dir) / "worker_spec.json"
    spec_file.write_text(json.dumps(asdict(spec)))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "nexa.train.worker", str(spec_file)]
    run.log("launch", command=command)
    from nexa.session.client import child_env
    from nexa.session.protocol import SessionError

    try:  # the session's tokens go to the workers' environment only
        env, _ = child_env({**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    except SessionError as exc:
        raise TrainError(f"cannot read the nexa session's tokens: {exc}") from exc
    done = subprocess.run(command, env=env, stdout=sys.stderr)
    if done.returncode != 0:
        raise TrainError(f"torchrun with {nproc} processes exited with code {done.returncode}; see the worker output above")


def _finish(lab: Lab, run: RunContext, spec: WorkerSpec, pack_id: str | None) -> TrainOutcome:
    result_file = Path(spec.run_dir) / RESULT_FILE
    if not result_file.exists():
        raise TrainError(f"the training workers ended without writing {result_file}")
    result = json.loads(result_file.read_text())
    store = lab.durable()
    ref = store.put_dir(Path(spec.run_dir) / "model", f"models/{run.run_id}")
    model_ref = ArtifactRef(kind="checkpoint", ref=f"model:{run.run_id}", path=ref.path, sha256=ref.sha256, size_bytes=ref.size_bytes)
    run.add_output(model_ref)
    stats = result["stats"]
    wandb_run_id = result.get("wandb_run_id") or run.manifest.wandb_run_id  # a sweep agent's run, set by the caller
    metrics = {k: float(stats[k]) for k in ("final_loss", "tokens_per_s", "seconds", "steps") if k in stats}
    run.update(tokens_trained=int(stats["tokens_trained"]), best_checkpoint=ref.path, wandb_run_id=wandb_run_id,
               metrics={**run.manifest.metrics, **metrics})
    loss_ref = store.put_bytes(f"models/{run.run_id}-metrics.json", json.dumps(stats, indent=1).encode(), overwrite=True)
    run.add_output(loss_ref.model_copy(update={"kind": "metrics", "ref": f"metrics:{run.run_id}"}))
    run.log("trained", **{k: v for k, v in stats.items() if k != "loss_curve"})
    seconds = (datetime.now(timezone.utc) - run.manifest.started_at).total_seconds()
    cost = NodePricing.from_env().cost(PriceTable.from_lab(lab), run.manifest.provider, run.manifest.gpu_type, seconds)
    run.update(cost=cost, cost_estimate_usd_total=cost.total_usd)  # compute hours x the node's price
    return TrainOutcome(run_id=run.run_id, model=model_ref, stats=stats, pack_id=pack_id,
                        resumed_from=Path(spec.resume_from).name if spec.resume_from else None,
                        wandb_run_id=wandb_run_id)


def _run_to_resume(lab: Lab, config: TrainConfig) -> str:
    """The newest unfinished run of the same resolved config that left a durable checkpoint."""
    wanted = sha256_json(config.resolved())
    candidates = [r for r in list_runs(lab) if r.config_hash == wanted and r.status != "succeeded" and r.checkpoint_dir_durable]
    for manifest in reversed(candidates):
        store, prefix = checkpoint_store(lab, lab.checkpoint_dirs(manifest.run_id)[1])
        if latest_checkpoint(store, prefix) is not None:
            return manifest.run_id
    raise TrainError("nothing to resume: no unfinished run of this exact config left a durable checkpoint "
                     "(run without --resume to start one; changing the config starts a new run)")


def _check_distributed(config: TrainConfig, hardware, nproc: int) -> None:
    if config.distributed.fsdp and hardware.device != "cuda":
        raise TrainError("distributed.fsdp needs CUDA GPUs; this machine has none (use DDP: leave distributed.fsdp empty)")
    if config.precision == "fp16" and hardware.device != "cuda":
        raise TrainError("precision fp16 needs a CUDA GPU; use fp32 (or bf16) on CPU")
    if nproc > 1 and hardware.device == "cuda" and nproc > hardware.gpu_count:
        raise TrainError(f"--nproc {nproc} but only {hardware.gpu_count} GPU(s) are visible")


# -- checkpoints in durable storage ----------------------------------------------------------------
def checkpoint_store(lab: Lab, durable: str) -> tuple[DurableStore, str]:
    """The store and key prefix for checkpoints: a key in the lab's durable tier, or its own path/URL."""
    if "://" in durable or os.path.isabs(durable):
        return DurableStore(durable), ""
    return lab.durable(), durable


def latest_checkpoint(store: DurableStore, prefix: str) -> str | None:
    """Name of the highest ``checkpoint-N`` whose listing was written (so it is complete)."""
    steps = []
    for key in store.list(prefix or "."):
        parts = key.split("/")
        name = parts[-2] if len(parts) >= 2 else ""
        if parts[-1] == "_files.json" and name.startswith("checkpoint-") and name[11:].isdigit() \
                and store.exists(_join(prefix, f"{name}/_files.json")):  # listing + its sidecar: the copy finished
            steps.append(int(name[11:]))
    return f"checkpoint-{max(steps)}" if steps else None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


# -- worker process --------------------------------------------------------------------------------
def run_worker(spec: WorkerSpec, callbacks: list | None = None) -> dict[str, Any]:
    """Train as one process (or one rank of several); rank 0 saves the model and writes result.json."""
    from nexa.train.build import build_model_for, build_teacher, save_trained
    from nexa.train.trainer import train_on_pack

    config = validate_train_config(spec.config, f"{spec.run_dir}/worker_spec.json")
    packed, manifest = load_pack(Path(spec.pack_dir))
    model, tokenizer_file = build_model_for(config, Path(spec.pack_dir))
    teacher = build_teacher(config) if config.kd_mode == "logit" else None
    if teacher is not None:
        packed.teacher = cross_tokenizer_view(config, packed, Path(spec.pack_dir))
    kd = config.kd if config.kd_mode in ("logit", "offline") else None
    if config.kd_mode == "offline" and packed.topk_ids is None:
        raise TrainError(f"kd.mode=offline but the pack at {spec.pack_dir} has no top-k teacher logprobs")
    if config.kd_mode != "offline":
        packed.topk_ids = packed.topk_logprobs = None
    report_to = _wandb_setup(spec, config)
    sync = DurableCheckpointSync(Lab(spec.lab), spec.durable_checkpoint)
    stats = train_on_pack(model, packed, config.optim, Path(spec.checkpoint_dir), config.seed, f"train {config.name}",
                          teacher=teacher, kd=kd, save_steps=config.optim.save_steps,
                          resume_from=Path(spec.resume_from) if spec.resume_from else None,
                          callbacks=[sync, *(callbacks or [])], report_to=report_to, overrides=_overrides(config))
    if _rank() == 0:
        save_trained(model, config, Path(spec.run_dir) / "model", tokenizer_file)
        wandb_id = _wandb_finish() if report_to else None
        result = {"stats": {**stats, "pack_efficiency": manifest.efficiency}, "wandb_run_id": wandb_id}
        (Path(spec.run_dir) / RESULT_FILE).write_text(json.dumps(result))
    _leave_process_group()
    return stats


def _leave_process_group() -> None:
    """Wait for rank 0 to finish saving, then tear the group down: a rank that exits with gloo's threads
    still running aborts (``terminate called without an active exception``) and fails the whole launch."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _overrides(config: TrainConfig) -> dict[str, Any]:
    import torch

    optim = config.optim
    args: dict[str, Any] = {"gradient_accumulation_steps": optim.gradient_accumulation_steps, "optim": optim.optimizer,
                            "adam_beta2": optim.adam_beta2, "dataloader_drop_last": optim.drop_last, "bf16": config.precision == "bf16", "fp16": config.precision == "fp16"}
    if optim.logging_steps:
        args["logging_steps"] = optim.logging_steps
    if not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        args["ddp_backend"] = "gloo"
    if config.distributed.fsdp:
        args.update(fsdp=config.distributed.fsdp, fsdp_config=config.distributed.fsdp_config or None)
    return args


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _wandb_setup(spec: WorkerSpec, config: TrainConfig) -> list[str]:
    """W&B through the HF integration, offline unless asked otherwise; the run id is the nexa run id."""
    if spec.wandb_mode == "disabled":
        return []
    os.environ["WANDB_MODE"] = spec.wandb_mode  # resolved in train(): the config, else WANDB_MODE, else the lab's default
    os.environ.setdefault("WANDB_DIR", str(Path(spec.lab) / ".nexa" / "scratch"))
    os.environ.setdefault("WANDB_PROJECT", config.tracking.project)
    os.environ["WANDB_RUN_ID"] = spec.run_id.replace("_", "-")
    os.environ["WANDB_RESUME"] = "allow"
    os.environ.setdefault("WANDB_SILENT", "true")
    return ["wandb"]


def _wandb_finish() -> str | None:
    import wandb

    run_id = wandb.run.id if wandb.run is not None else None
    if wandb.run is not None:
        wandb.finish()
    return run_id


class DurableCheckpointSync(TrainerCallback):
    """After every checkpoint save, copy it from scratch to durable (rank 0 only); listing last = complete."""

    def __init__(self, lab: Lab, durable_checkpoint: str):
        self.store, self.prefix = checkpoint_store(lab, durable_checkpoint)

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        name = f"checkpoint-{state.global_step}"
        local = Path(args.output_dir) / name
        if not local.exists():
            raise TrainError(f"the trainer reported a save at step {state.global_step} but {local} does not exist")
        self.store.put_dir(local, _join(self.prefix, name))

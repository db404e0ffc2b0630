"""Top-level commands of the training layer: ``nexa pack``, ``nexa train`` and ``nexa sweep launch|analyze``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Optional

import typer

from nexa.ledger import Lab, LedgerError
from nexa.ledger.console import FOUND_LAB, JSON, console, emit_result, fail, failing_on, table

Backend = Literal["optuna", "wandb"]  # where a sweep runs
sweep_app = typer.Typer(help="Hyper-parameter sweeps on Optuna: launch trials, analyze the best into a config.",
                        no_args_is_help=True)


def pack(dataset: list[str] = typer.Option(..., "--dataset", help="Dataset ID or ID@vN (repeat for several)."),
         tokenizer: Path = typer.Option(..., "--tokenizer", help="tokenizer.json or a folder holding one."),
         seq_len: int = typer.Option(128, "--seq-len", min=8, help="Block length in tokens."),
         split: Optional[str] = typer.Option("train", help="Keep rows of this split ('' for all)."),
         topk_field: Optional[str] = typer.Option(None, "--topk-field", help="Column of teacher top-k logprobs to pack (offline KD)."),
         lab: Lab = FOUND_LAB, json_out: bool = JSON) -> None:
    """Tokenize datasets and pack them into fixed-length blocks (best-fit decreasing) in durable packs/<id>."""
    from nexa.pipeline.standalone import require_paths
    from nexa.train.packs import PackRequest, pack_in_run

    require_paths(tokenizer=tokenizer)
    request = PackRequest(datasets=dataset, tokenizer=tokenizer, seq_len=seq_len, split=split or None, topk_field=topk_field)
    run_id, pid, ref, manifest = pack_in_run(lab, request)
    shown = manifest.model_dump(include={"samples", "blocks", "seq_len", "efficiency", "padding_efficiency", "truncated", "quarantined"})
    console.print(table(f"pack {pid}", list(shown), [list(shown.values())]))
    emit_result({"run_id": run_id, "status": "succeeded", "pack_id": pid, **{k: shown[k] for k in ("efficiency", "padding_efficiency",
                 "blocks", "samples")}, "outputs": [{"kind": "pack", "path": ref.path, "sha256": ref.sha256}]}, json_out)


def train(config: Path = typer.Option(..., "--config", help="Training config YAML (see configs/)."),
          resume: bool = typer.Option(False, "--resume", help="Continue the latest interrupted run of this config from its durable checkpoint."),
          nproc: Optional[int] = typer.Option(None, "--nproc", min=1, help="Processes (torchrun; DDP, gloo on CPU)."),
          lab: Lab = FOUND_LAB, json_out: bool = JSON) -> None:
    """Train (SFT, LoRA, logit/sequence/offline KD) on the HF Trainer; checkpoints sync to durable storage."""
    from nexa.infra.hardware import detect_hardware
    from nexa.train.config import load_train_config
    from nexa.train.engine import TrainError, check_model_inputs
    from nexa.train.engine import train as run_training

    cfg = load_train_config(config)
    console.print(table("hardware", ["", ""], detect_hardware().rows()))
    check_model_inputs(lab, cfg)  # a bad model, tokenizer or KD pairing: the root's `error:` line, exit 2, nothing written
    try:
        outcome = run_training(lab, cfg, nproc=nproc, resume=resume,
                               on_start=lambda run: console.print(f"run [bold]{run.run_id}[/bold]"))
    except (TrainError, LedgerError, FileNotFoundError, ValueError) as exc:
        fail(str(exc), 1)
    stats = outcome.stats
    console.print(table(f"train {cfg.name}", ["steps", "final loss", "tokens", "tokens/s", "seconds", "pack efficiency"],
                        [(stats["steps"], stats["final_loss"], stats["tokens_trained"], stats["tokens_per_s"], stats["seconds"],
                          stats.get("pack_efficiency"))]))
    emit_result(outcome.payload(), json_out)


@sweep_app.command("launch")
def sweep_launch(config: Path = typer.Option(..., "--config", help="Base training config YAML."),
                 space: Path = typer.Option(..., "--space", help="Search space YAML: {dotted.field: {type, low, high, log | choices}}."),
                 trials: int = typer.Option(10, "--trials", min=1),
                 backend: Backend = typer.Option("optuna", "--backend", help="optuna (local or shared RDB study) | wandb (needs W&B online)."),
                 storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL (default: SQLite in the lab)."),
                 study: Optional[str] = typer.Option(None, "--study", help="Optuna: study name (default: the config's name). "
                                                     "W&B: an existing sweep id to join."),
                 method: str = typer.Option("bayes", "--method", help="W&B: bayes | random | grid."),
                 entity: Optional[str] = typer.Option(None, "--entity", help="W&B entity (default: your default entity)."),
                 project: Optional[str] = typer.Option(None, "--project", help="W&B project (default: the config's tracking.project)."),
                 lab: Lab = FOUND_LAB, json_out: bool = JSON) -> None:
    """Run N trials of the base config with parameters sampled from the space; Optuna prunes weak trials early."""
    from nexa.train.sweep import SweepError, run_sweep

    with failing_on(SweepError):
        result = run_sweep(lab, backend, config, space, trials, storage=storage, study=study, method=method, entity=entity,
                           project=project)
    console.print(table(f"sweep {result['study']}", ["trial", "state", "value", "params"],
                        [(t["number"], t["state"], t["value"], json.dumps(t["params"])) for t in result["trials"]]))
    emit_result(result, json_out)


@sweep_app.command("analyze")
def sweep_analyze(study: str = typer.Option(..., "--study", help="Optuna study name, or the W&B sweep path entity/project/id."),
                  backend: Backend = typer.Option("optuna", "--backend", help="Where the study ran."),
                  storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL (default: SQLite in the lab)."),
                  out: Path = typer.Option(Path("configs/autotuned.yaml"), "--out", help="Where the best config is written."),
                  lab: Lab = FOUND_LAB, json_out: bool = JSON) -> None:
    """Write the best trial's full config to configs/autotuned.yaml (Optuna: with parameter importances)."""
    from nexa.train.sweep import SweepError, best_of_sweep

    with failing_on(SweepError):
        result = best_of_sweep(lab, backend, study, out, storage)
    console.print(table(f"best of {study}", ["trial", "value", "params"],
                        [(result["best_trial"], result["best_value"], json.dumps(result["best_params"]))]))
    emit_result(result, json_out)

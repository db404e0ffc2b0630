"""Sweeps on Optuna: a base training config, a search space over its dotted fields, N trials.

The study lives in SQLite inside the lab by default (``.nexa/optuna.db``) or in any RDB URL so
several machines can share it. Each trial is an ordinary ``train`` run (its own manifest, child of
the sweep run); the median pruner stops trials whose logged loss trails the others. ``analyze``
applies the best trial's parameters to the base config and writes it out (``configs/autotuned.yaml``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from transformers import TrainerCallback

from nexa.ledger import Lab, ManifestValidationError
from nexa.ledger.runs import start_run
from nexa.ledger.store import atomic_write_bytes
from nexa.train.config import TrainConfig, load_train_config, set_dotted, validate_train_config


class SweepError(RuntimeError):
    """A sweep that cannot start or be analyzed; the message names the file, field or study."""


class Param(BaseModel):
    """One searched field: a float/int range (optionally log-scaled) or a list of choices."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _bounds(self) -> "Param":
        if self.type == "categorical" and not self.choices:
            raise ValueError("categorical needs `choices`")
        if self.type != "categorical" and (self.low is None or self.high is None or self.low >= self.high):
            raise ValueError("float/int need `low` < `high`")
        return self

    def suggest(self, trial, name: str) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(name, self.choices)
        if self.type == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)


class SearchSpace(BaseModel):
    """``space.yaml``: ``{schema_version: 1, direction: minimize, params: {optim.learning_rate: {...}}}``."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    direction: Literal["minimize"] = Field("minimize", description="The objective is the final training loss.")
    params: dict[str, Param]


def load_space(path: Path) -> SearchSpace:
    if not Path(path).exists():
        raise SweepError(f"no search space at {path}")
    try:
        return SearchSpace.model_validate(yaml.safe_load(Path(path).read_text()) or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SweepError(f"{path}: {problems}") from exc


def default_storage(lab: Lab) -> str:
    return f"sqlite:///{lab.root / '.nexa' / 'optuna.db'}"


def launch_sweep(lab: Lab, config_path: Path, space_path: Path, trials: int, *, storage: str | None = None,
                 study_name: str | None = None) -> dict[str, Any]:
    """Run ``trials`` more trials of the study (created or continued), each a child run of one sweep run."""
    import optuna

    base, space, raw = load_sweep(config_path, space_path)
    storage = storage or default_storage(lab)
    name = study_name or base.name
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=storage, direction=space.direction, load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=base.seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0))
    study.set_user_attr("base_config", raw)
    with start_run(lab, "sweep", config={"base": raw, "space": space.model_dump(), "trials": trials, "study": name},
                   seed=base.seed) as sweep_run:
        study.optimize(lambda trial: _objective(lab, trial, raw, space, sweep_run.run_id), n_trials=trials)
        summary = _summary(study, name, storage)
        sweep_run.update(metrics={"best_value": summary["best_value"] or 0.0, "trials": float(len(summary["trials"]))})
    return {"run_id": sweep_run.run_id, "status": "succeeded", **summary, "outputs": []}


def _objective(lab: Lab, trial, base_raw: dict, space: SearchSpace, parent: str) -> float:
    import optuna

    from nexa.train.engine import train

    params = {name: p.suggest(trial, name) for name, p in space.params.items()}
    config = apply_params(copy.deepcopy(base_raw), params, f"trial {trial.number}")
    pruning = _PruneOnLoss(trial)
    outcome = train(lab, config, run_type="sweep_trial", parent_run_id=parent, callbacks=[pruning])
    trial.set_user_attr("run_id", outcome.run_id)
    if pruning.pruned:
        raise optuna.TrialPruned(f"loss trailed the median at step {pruning.pruned}")
    return final_loss(outcome.stats["loss_curve"])


def final_loss(curve: list) -> float:
    """Mean of the last three logged losses: less noisy than the very last one."""
    tail = [loss for _, loss in curve[-3:]]
    if not tail:
        raise SweepError("the trial logged no loss; lower optim.logging_steps")
    return sum(tail) / len(tail)


class _PruneOnLoss(TrainerCallback):
    """Report each logged loss to Optuna; when it says prune, stop training cleanly (the run still closes)."""

    def __init__(self, trial):
        self.trial, self.pruned = trial, 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs and state.is_world_process_zero:
            self.trial.report(float(logs["loss"]), state.global_step)
            if self.trial.should_prune():
                self.pruned = state.global_step
                control.should_training_stop = True


def load_sweep(config_path: Path, space_path: Path) -> tuple[TrainConfig, SearchSpace, dict]:
    """The base config, the space and the resolved base, with every searched field checked to exist and validate
    before a single trial runs (a typo costs no GPU time); both backends start here."""
    base = load_train_config(config_path)
    space = load_space(space_path)
    raw = base.resolved()
    for name, param in space.params.items():
        apply_params(raw, {name: _probe(param)}, f"{space_path}: {name}")
    return base, space, raw


def _probe(param: Param) -> Any:
    return param.choices[0] if param.type == "categorical" else (int(param.low) if param.type == "int" else param.low)


def apply_params(raw: dict, params: dict[str, Any], where: str):
    """The base config with ``params`` (dotted field -> value) set, validated; a SweepError names ``where``."""
    raw = copy.deepcopy(raw)
    for name, value in params.items():
        try:
            set_dotted(raw, name, value)
        except ValueError as exc:
            raise SweepError(f"{where}: {exc}") from exc
    try:
        return validate_train_config(raw, where)
    except ManifestValidationError as exc:
        raise SweepError(f"{where}: the config does not validate with these values: {exc}") from exc


def _summary(study, name: str, storage: str) -> dict[str, Any]:
    trials = [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
               "run_id": t.user_attrs.get("run_id")} for t in study.trials]
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    best = study.best_trial if complete else None
    return {"study": name, "storage": storage, "trials": trials, "best_value": best.value if best else None,
            "best_params": best.params if best else {}}


def run_sweep(lab: Lab, backend: Literal["optuna", "wandb"], config_path: Path, space_path: Path, trials: int, *,
              storage: str | None = None, study: str | None = None, method: str = "bayes", entity: str | None = None,
              project: str | None = None) -> dict[str, Any]:
    """``nexa sweep launch``: :func:`launch_sweep` on Optuna, or a W&B sweep (``study`` is then a sweep id to join)."""
    if backend == "wandb":
        from nexa.train.sweep_wandb import launch_wandb_sweep

        return launch_wandb_sweep(lab, config_path, space_path, trials, method=method, entity=entity, project=project,
                                  sweep_id=study)
    return launch_sweep(lab, config_path, space_path, trials, storage=storage, study_name=study)


def best_of_sweep(lab: Lab, backend: Literal["optuna", "wandb"], study: str, out: Path,
                  storage: str | None = None) -> dict[str, Any]:
    """``nexa sweep analyze``: the best trial's config written to ``out``, from an Optuna study or a W&B sweep path."""
    if backend == "wandb":
        from nexa.train.sweep_wandb import analyze_wandb_sweep

        return analyze_wandb_sweep(lab, study, out)
    return analyze_sweep(lab, study, out, storage=storage)


def analyze_sweep(lab: Lab, study_name: str, out: Path, *, storage: str | None = None) -> dict[str, Any]:
    """Write the best trial's config (base + best params) to ``out``; report importances where computable."""
    import optuna

    storage = storage or default_storage(lab)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError as exc:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise SweepError(f"no study {study_name!r} in {storage}; studies there: {names or 'none'}") from exc
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not complete:
        raise SweepError(f"study {study_name!r} has no completed trial yet; run `nexa sweep launch` first")
    best = study.best_trial
    config = apply_params(study.user_attrs["base_config"], best.params, f"study {study_name} trial {best.number}")
    write_autotuned(config, out, f"`nexa sweep analyze --study {study_name}`: trial {best.number}, loss {best.value:.6f}")
    importances = optuna.importance.get_param_importances(study) if len(complete) >= 2 and best.params else {}
    return {"run_id": None, "status": "succeeded", "study": study_name, "best_trial": best.number, "best_value": best.value,
            "best_params": best.params, "importances": importances, "best_run_id": best.user_attrs.get("run_id"),
            "outputs": [{"kind": "config", "path": str(out)}]}


def write_autotuned(config, out: Path, provenance: str) -> None:
    """The full best config, renamed ``<name>-autotuned``, with a comment saying which sweep and trial chose it."""
    document = {**config.resolved(), "name": f"{config.name}-autotuned"}
    header = f"# written by {provenance}\n"
    atomic_write_bytes(out, (header + yaml.safe_dump(document, sort_keys=False)).encode())

"""W&B sweeps as the second sweep backend: W&B's sweep controller picks each trial's parameters (grid,
random or bayes) and each trial is still an ordinary nexa ``train`` run, child of one sweep run.

The controller lives on a W&B server, so this backend needs W&B online (wandb.ai, or a self-hosted
server through ``WANDB_BASE_URL``) and a login; offline, ``--backend optuna`` does the same job with a
local SQLite study. The search space file is the one Optuna reads: dotted fields become W&B's nested
``parameters`` and come back as a nested ``wandb.config``. The sweep metric is ``loss``: every logged
training loss goes into the trial's W&B history and its summary holds the same final value the Optuna
backend minimizes (mean of the last three logged losses). Trials are not stopped early on W&B.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Mapping

from transformers import TrainerCallback

from nexa.ledger import Lab
from nexa.ledger.runs import list_runs, start_run
from nexa.train.sweep import Param, SearchSpace, SweepError, apply_params, final_loss, load_sweep, write_autotuned

METRIC = "loss"
METHODS = ("bayes", "random", "grid")
OFFLINE_MODES = ("offline", "disabled", "dryrun")


# -- the search space in W&B's words ----------------------------------------------------------------
def wandb_parameter(name: str, param: Param, method: str) -> dict[str, Any]:
    """One searched field as a W&B sweep parameter that W&B samples from the same distribution Optuna would."""
    if param.type == "categorical":
        return {"values": list(param.choices)}
    if method == "grid":
        raise SweepError(f"{name}: a grid sweep needs `choices` for every field (W&B cannot grid a {param.type} range)")
    low, high = (int(param.low), int(param.high)) if param.type == "int" else (param.low, param.high)
    if param.log and param.type == "float":
        if param.step is not None:
            raise SweepError(f"{name}: a log-scaled float range cannot also have a `step`")
        return {"distribution": "log_uniform_values", "min": low, "max": high}
    if param.log:
        if param.step not in (None, 1) or low < 1:
            raise SweepError(f"{name}: a log-scaled int range needs low >= 1 and step 1 on W&B")
        return {"distribution": "q_log_uniform_values", "min": low, "max": high, "q": 1}
    if param.step is not None and not (param.type == "int" and param.step == 1):
        step = int(param.step) if param.type == "int" else param.step
        return {"distribution": "q_uniform", "min": low, "max": high, "q": step}
    return {"distribution": "int_uniform" if param.type == "int" else "uniform", "min": low, "max": high}


def wandb_sweep_config(space: SearchSpace, *, method: str, name: str) -> dict[str, Any]:
    """The sweep config ``wandb.sweep`` takes: dotted fields nested (``optim: {parameters: {learning_rate: ...}}``)."""
    if method not in METHODS:
        raise SweepError(f"W&B sweep method {method!r} is not one of {', '.join(METHODS)}")
    parameters: dict[str, Any] = {}
    for dotted, param in space.params.items():
        *parents, leaf = dotted.split(".")
        level = parameters
        for part in parents:
            level = level.setdefault(part, {"parameters": {}})["parameters"]
        level[leaf] = wandb_parameter(dotted, param, method)
    return {"name": name, "method": method, "metric": {"name": METRIC, "goal": space.direction},
            "parameters": parameters}


def params_from_wandb_config(space: SearchSpace, config: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The searched fields' values out of a (nested) ``wandb.config``, typed and checked against the space."""
    params = {}
    for dotted, param in space.params.items():
        value: Any = config
        for part in dotted.split("."):
            if not isinstance(value, Mapping) or part not in value:
                raise SweepError(f"{where}: the W&B run config has no value for {dotted} (keys: {sorted(config)})")
            value = value[part]
        params[dotted] = _typed(dotted, param, value, where)
    return params


def _typed(name: str, param: Param, value: Any, where: str) -> Any:
    if param.type == "categorical":
        if value not in param.choices:
            raise SweepError(f"{where}: {name}={value!r} is not one of the space's choices {param.choices}")
        return value
    number = int(round(value)) if param.type == "int" else float(value)  # q_uniform hands ints back as floats
    if not param.low <= number <= param.high:
        raise SweepError(f"{where}: {name}={value!r} is outside the space's range [{param.low}, {param.high}]")
    return number


# -- one trial on the run the W&B agent started ----------------------------------------------------
class _LossToWandb(TrainerCallback):
    """Stream each logged training loss into the trial's W&B run (the sweep metric's history)."""

    def __init__(self, wandb_run):
        self.wandb_run = wandb_run

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs and state.is_world_process_zero:
            self.wandb_run.log({METRIC: float(logs["loss"]), "learning_rate": logs.get("learning_rate")},
                               step=state.global_step)


def run_wandb_trial(lab: Lab, base_raw: dict, space: SearchSpace, wandb_run, parent_run_id: str) -> dict[str, Any]:
    """Train the base config with the W&B run's parameters; the trial's manifest records the W&B run id and the
    W&B run's summary holds the final loss. Logging goes through ``wandb_run`` only (the HF integration is off
    for the trial so that the agent's run is the one W&B sees)."""
    from nexa.train.engine import train

    params = params_from_wandb_config(space, dict(wandb_run.config), f"W&B run {wandb_run.id}")
    raw = copy.deepcopy(base_raw)
    raw.setdefault("tracking", {})["wandb"] = "disabled"
    config = apply_params(raw, params, f"W&B run {wandb_run.id}")
    outcome = train(lab, config, run_type="sweep_trial", parent_run_id=parent_run_id, callbacks=[_LossToWandb(wandb_run)],
                    on_start=lambda run: run.update(wandb_run_id=wandb_run.id))
    curve = outcome.stats["loss_curve"]
    if config.distributed.nproc > 1:  # the callback ran in the torchrun workers' absence: log the curve now
        for step, loss in curve:
            wandb_run.log({METRIC: loss}, step=step)
    value = final_loss(curve)
    wandb_run.summary[METRIC] = value
    wandb_run.summary["nexa_run_id"] = outcome.run_id
    return {"state": "COMPLETE", "value": value, "params": params,
            "run_id": outcome.run_id, "wandb_run_id": wandb_run.id}


# -- launch and analyze ----------------------------------------------------------------------------
def require_online() -> None:
    mode = os.environ.get("WANDB_MODE", "online")
    if mode in OFFLINE_MODES:
        raise SweepError(f"W&B sweeps run their controller on a W&B server, but WANDB_MODE={mode}; set WANDB_MODE=online "
                         "and log in (`wandb login`, or WANDB_API_KEY; WANDB_BASE_URL for a self-hosted server), "
                         "or use `--backend optuna`, which works offline")


def _wandb_failure(action: str, exc: Exception) -> SweepError:
    url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    return SweepError(f"W&B could not {action} (server {url}): {exc}. Check the login and the network, "
                      "or use `--backend optuna`, which works offline")


def launch_wandb_sweep(lab: Lab, config_path: Path, space_path: Path, trials: int, *, method: str = "bayes",
                       entity: str | None = None, project: str | None = None,
                       sweep_id: str | None = None) -> dict[str, Any]:
    """Create the W&B sweep (or join ``sweep_id``) and run ``trials`` trials of it in this process."""
    import wandb

    require_online()
    base, space, raw = load_sweep(config_path, space_path)
    sweep_config = wandb_sweep_config(space, method=method, name=base.name)
    project = project or base.tracking.project
    try:
        sweep_id = sweep_id or wandb.sweep(sweep_config, entity=entity, project=project)
        entity = entity or wandb.Api().default_entity
    except wandb.errors.Error as exc:
        raise _wandb_failure("create the sweep", exc) from exc
    path = f"{entity}/{project}/{sweep_id}"
    records: list[dict[str, Any]] = []
    with start_run(lab, "sweep", config={"backend": "wandb", "wandb_sweep": path, "base": raw,
                                          "space": space.model_dump(), "trials": trials, "method": method},
                   seed=base.seed) as sweep_run:
        def one_trial() -> None:
            with wandb.init() as wandb_run:  # the agent has put this trial's parameters in its config
                try:
                    records.append(run_wandb_trial(lab, raw, space, wandb_run, sweep_run.run_id))
                except Exception as exc:  # recorded for the summary, then re-raised so W&B marks the run failed
                    records.append({"state": "FAIL", "value": None, "params": {}, "run_id": None,
                                    "wandb_run_id": wandb_run.id, "error": f"{type(exc).__name__}: {exc}"})
                    raise

        try:
            wandb.agent(sweep_id, function=one_trial, entity=entity, project=project, count=trials)
        except wandb.errors.Error as exc:
            raise _wandb_failure(f"run the agent for sweep {path}", exc) from exc
        complete = [r for r in records if r["state"] == "COMPLETE"]
        if not complete:
            errors = "; ".join(r.get("error", "") for r in records) or "the agent ran no trial"
            raise SweepError(f"no trial of W&B sweep {path} finished: {errors}")
        best = min(complete, key=lambda r: r["value"])
        sweep_run.update(metrics={"best_value": best["value"], "trials": float(len(records))})
    for number, record in enumerate(records):
        record["number"] = number
    return {"run_id": sweep_run.run_id, "status": "succeeded", "study": path, "storage": "wandb", "trials": records,
            "best_value": best["value"], "best_params": best["params"], "outputs": []}


def _launching_run(lab: Lab, path: str):
    sweeps = [r for r in list_runs(lab) if r.run_type == "sweep" and r.config.get("wandb_sweep")]
    runs = [r for r in sweeps if r.config["wandb_sweep"] == path]
    if not runs:
        launched = sorted({r.config["wandb_sweep"] for r in sweeps})
        raise SweepError(f"no sweep run in {lab.root} launched W&B sweep {path}; analyze from the lab that launched it "
                         f"(W&B sweeps launched here: {launched or 'none'})")
    return runs[-1]


def analyze_wandb_sweep(lab: Lab, path: str, out: Path) -> dict[str, Any]:
    """Ask W&B for the sweep's best run (by its metric) and write base config + its parameters to ``out``."""
    import wandb

    require_online()
    launched = _launching_run(lab, path)
    space = SearchSpace.model_validate(launched.config["space"])
    try:
        best = wandb.Api().sweep(path).best_run()
    except wandb.errors.Error as exc:
        raise _wandb_failure(f"read sweep {path}", exc) from exc
    if best is None:
        raise SweepError(f"W&B sweep {path} has no finished run yet; run `nexa sweep launch --backend wandb` first")
    params = params_from_wandb_config(space, best.config, f"W&B run {best.id}")
    config = apply_params(launched.config["base"], params, f"W&B sweep {path} run {best.id}")
    value = best.summary.get(METRIC)
    write_autotuned(config, out, f"`nexa sweep analyze --backend wandb --study {path}`: W&B run {best.id}, loss {value}")
    return {"run_id": None, "status": "succeeded", "study": path, "best_trial": best.id, "best_value": value,
            "best_params": params, "importances": {}, "best_run_id": best.summary.get("nexa_run_id"),
            "outputs": [{"kind": "config", "path": str(out)}]}

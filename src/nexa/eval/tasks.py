"""Eval tasks: a built-in capability or a registered dataset, always resolved to a dataset version.

A built-in task (``reasoning``) is materialised once as the dataset ``eval-<capability>`` from a
fixed generator seed, so every score names the exact ``ID@vN`` it was measured on; a registered
dataset (``ID`` or ``ID@vN``) contributes its ``eval`` split when it has one, else all its rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from nexa.data.generators import CAPABILITIES, generate
from nexa.ledger import ArtifactNotFoundError, Lab
from nexa.ledger.datasets import read_dataset_rows, write_dataset_version
from nexa.ledger.registry import DatasetRegistry

BUILTIN_EVAL_SEED = 1042  # the golden data stage's eval seed (42 + 1000), so built-in tasks match it


@dataclass
class Task:
    name: str
    ref: str
    items: list[dict]


def resolve_tasks(lab: Lab, names: list[str], n: int = 200, created_by: str | None = None) -> list[Task]:
    """Each name as a versioned task with its eval items; an unknown name raises listing what exists."""
    return [_resolve(lab, name.strip(), n, created_by) for name in names if name.strip()]


def _resolve(lab: Lab, name: str, n: int, created_by: str | None) -> Task:
    if name in CAPABILITIES:
        rows = [{**r, "split": "eval"} for r in generate(name, n, seed=BUILTIN_EVAL_SEED)]
        manifest = write_dataset_version(lab, f"eval-{name}", rows, row_schema="qa", splits={"eval": len(rows)},
                                         created_by=created_by, notes=f"built-in eval task {name!r}, seed {BUILTIN_EVAL_SEED}")
        return Task(name, manifest.ref, rows)
    registry = DatasetRegistry(lab.registry_dir)
    try:
        dataset_id, entry = registry.resolve(name)
    except (ArtifactNotFoundError, ValueError) as exc:
        raise ArtifactNotFoundError(f"task {name!r} is neither a built-in capability {sorted(CAPABILITIES)} "
                       f"nor a registered dataset ({exc})") from exc
    ref = f"{dataset_id}@v{entry.version}"
    rows = read_dataset_rows(lab, ref)
    evals = [r for r in rows if r.get("split") == "eval"] or rows
    _check_rows(ref, evals)
    return Task(dataset_id, ref, evals)


def _check_rows(ref: str, rows: list[dict]) -> None:
    for i, row in enumerate(rows):
        missing = [k for k in ("prompt", "answer") if not isinstance(row.get(k), str)]
        if missing:
            raise ValueError(f"{ref} row {i}: eval rows need string fields {missing} (prompt and answer)")

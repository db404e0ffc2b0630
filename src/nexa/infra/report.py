"""``nexa cost report``: what the lab's runs cost, by stage, run, provider or day, from the manifests alone.

Every leaf run (a stage of a pipeline, a ``nexa train``, an eval ...) is one row; its cost is
the ``cost`` breakdown in its manifest (compute hours x price + API tokens x price), so the report
adds nothing the ledger does not already say. A pipeline's own manifest sums its stages and is
therefore not counted twice.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from nexa.ledger import Lab
from nexa.ledger.manifests import RunManifest
from nexa.ledger.runs import list_runs

GROUPINGS = ("stage", "run", "provider", "day")
ALL = "*"


def cost_report(lab: Lab, by: str = "stage") -> dict[str, Any]:
    """``{"total_usd", "rows": [{"run_id", "stage", "provider", "hours", "usd"}]}`` grouped ``by``.

    ``stage`` lists every leaf run; ``run`` sums per top-level run; ``provider`` per provider; ``day``
    per UTC day (the day is in ``run_id``, the field that names what the row stands for). Fields a
    grouping sums over read ``*``.
    """
    if by not in GROUPINGS:
        raise ValueError(f"--by {by!r} is not one of {', '.join(GROUPINGS)}")
    runs = list_runs(lab)
    parents = {r.run_id: r.parent_run_id for r in runs}
    leaves = [r for r in runs if r.run_type != "pipeline"]
    rows = [_row(r, _root(r.run_id, parents)) for r in leaves]
    if by != "stage":
        rows = _group(rows, leaves, by)
    return {"total_usd": round(sum(r["usd"] for r in rows), 6), "rows": rows}


def _row(run: RunManifest, root: str) -> dict[str, Any]:
    return {"run_id": root, "stage": run.stage or run.run_type, "provider": run.cost.provider or run.provider,
            "hours": round(run.cost.compute_hours, 6), "usd": round(run.cost.total_usd, 6)}


def _root(run_id: str, parents: dict[str, str | None]) -> str:
    """The top-level run (a pipeline, or the run itself) a run belongs to."""
    seen = set()
    while parents.get(run_id) and run_id not in seen:
        seen.add(run_id)
        run_id = parents[run_id] or run_id
    return run_id


def _group(rows: list[dict[str, Any]], leaves: list[RunManifest], by: str) -> list[dict[str, Any]]:
    totals: dict[tuple, dict[str, float]] = defaultdict(lambda: {"hours": 0.0, "usd": 0.0})
    for row, run in zip(rows, leaves):
        key = {"run": (row["run_id"], ALL, ALL), "provider": (ALL, ALL, row["provider"]),
               "day": (run.started_at.date().isoformat(), ALL, ALL)}[by]
        totals[key]["hours"] += row["hours"]
        totals[key]["usd"] += row["usd"]
    return [{"run_id": k[0], "stage": k[1], "provider": k[2], "hours": round(v["hours"], 6), "usd": round(v["usd"], 6)}
            for k, v in sorted(totals.items())]

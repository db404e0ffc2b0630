"""What the dashboard and the reports show, read from the ledger: leaderboards, runs, verify reports, feedback.

Everything is found through what writers already record (a run's output artifacts), never by guessing
file names across the disk. A missing or unreadable artifact becomes a :class:`Missing` note that the
page shows, not an exception.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nexa.ledger import Lab, LedgerError
from nexa.ledger.manifests import RunManifest

LEADERBOARD_FILE = "leaderboard.parquet"
VERIFY_FILES = ("verify_report.json", "bundle/verify_report.json")
FEEDBACK_FILE = "feedback.json"
HEADLINE_METRIC = "exact_match"


@dataclass
class Missing:
    """An artifact a page wanted but could not read, with the reason to show."""

    what: str
    reason: str


@dataclass
class Artifact:
    """One output of a run: its logical name (``eval:abc…`` or a stage name) and its local folder or file."""

    run_id: str
    name: str
    path: Path


@dataclass
class LabView:
    """The lab's runs (oldest first) and every output artifact they recorded."""

    lab: Lab
    runs: list[RunManifest]
    problems: list[Missing] = field(default_factory=list)

    @property
    def by_id(self) -> dict[str, RunManifest]:
        return {r.run_id: r for r in self.runs}

    def children(self, run_id: str) -> list[RunManifest]:
        return [r for r in self.runs if r.parent_run_id == run_id]

    def artifacts(self, run: RunManifest | None = None) -> list[Artifact]:
        """Outputs of one run (or of every run), each attributed to the run that produced it."""
        every = _dedupe([a for r in self.runs for a in _outputs(r)], self.by_id)
        if run is None:
            return every
        mine = {a.path for a in _outputs(run)}
        return [a for a in every if a.path in mine]


def open_lab(root: str | Path) -> LabView:
    """Every readable run manifest of the lab; unreadable ones are listed as problems, not fatal."""
    from nexa.ledger.manifests import load_manifest

    lab = Lab(root)
    runs, problems = [], []
    for path in sorted(lab.manifests_dir.glob("*.json")):
        try:
            runs.append(load_manifest(RunManifest, path.read_bytes(), str(path)))
        except LedgerError as exc:
            problems.append(Missing(f"run manifest {path.name}", str(exc)))
    runs.sort(key=lambda r: (r.started_at, r.run_id))
    return LabView(lab, runs, problems)


def _outputs(run: RunManifest) -> list[Artifact]:
    return [Artifact(run.run_id, ref.ref.split(":")[0] if ref.kind == "stage_output" else ref.ref, Path(ref.path))
            for ref in run.outputs if "://" not in ref.path]


def _dedupe(artifacts: list[Artifact], runs: dict[str, RunManifest]) -> list[Artifact]:
    """A cached stage output is listed by every pipeline run that reused it: keep the run that made it."""
    best: dict[Path, Artifact] = {}
    for artifact in artifacts:
        seen = best.get(artifact.path)
        if seen is None or (runs[seen.run_id].run_type == "pipeline" and runs[artifact.run_id].run_type != "pipeline"):
            best[artifact.path] = artifact
    return list(best.values())


def find_file(artifact: Artifact, names: tuple[str, ...] | str) -> Path | None:
    """The first of ``names`` inside an artifact folder (or the artifact itself when it is that file)."""
    names = (names,) if isinstance(names, str) else names
    for name in names:
        candidate = artifact.path / name
        if candidate.is_file():
            return candidate
        if artifact.path.is_file() and artifact.path.as_posix().endswith(name):
            return artifact.path
    return None


# -- leaderboards ---------------------------------------------------------------------------------
def leaderboard_rows(view: LabView, run: RunManifest | None = None) -> list[dict[str, Any]]:
    """Every leaderboard row of the lab (or of one run), tagged with the run that wrote it and when."""
    rows = []
    for artifact in view.artifacts(run):
        started = view.by_id[artifact.run_id].started_at.isoformat(timespec="seconds")
        rows += [{**row, "run_id": artifact.run_id, "source": artifact.name, "run_started": started}
                 for row in leaderboard_rows_of(artifact)]
    return rows


def leaderboard_rows_of(artifact: Artifact) -> list[dict[str, Any]]:
    """The rows of an artifact's ``leaderboard.parquet`` (none when it has no leaderboard)."""
    import pyarrow.parquet as pq

    path = find_file(artifact, LEADERBOARD_FILE)
    return [] if path is None else pq.ParquetFile(path).read().to_pylist()


def filter_rows(rows: list[dict], capability: str = "", role: str = "", run: str = "") -> list[dict]:
    """Rows matching every non-empty filter."""
    wanted = {"capability": capability, "role": role, "run_id": run}
    return [r for r in rows if all(not v or r.get(k) == v for k, v in wanted.items())]


def sort_rows(rows: list[dict], key: str, descending: bool) -> list[dict]:
    """Sorted by one column; rows lacking it go last whichever the direction."""
    present = [r for r in rows if r.get(key) is not None]
    absent = [r for r in rows if r.get(key) is None]
    return sorted(present, key=lambda r: r[key], reverse=descending) + absent


# -- verify reports and feedback rounds -----------------------------------------------------------
def verify_reports(view: LabView, run: RunManifest | None = None) -> list[tuple[Artifact, dict | Missing]]:
    return read_each(view.artifacts(run), VERIFY_FILES)


def feedback_rounds(view: LabView, run: RunManifest | None = None) -> list[tuple[Artifact, dict | Missing]]:
    return read_each(view.artifacts(run), FEEDBACK_FILE)


def read_each(artifacts: list[Artifact], names: tuple[str, ...] | str) -> list[tuple[Artifact, dict | Missing]]:
    """The JSON file ``names`` of every artifact that has one (unreadable ones as :class:`Missing`)."""
    return [(a, _read_json(p)) for a in artifacts if (p := find_file(a, names)) is not None]


def _read_json(path: Path) -> dict | Missing:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return Missing(str(path), f"{type(exc).__name__}: {exc}")


def intervals(report: dict) -> dict[str, dict[str, list[float]]]:
    """``{name: {capability: [low, high]}}`` for every ``*_ci`` field of a verify report (when present)."""
    return {k: v for k, v in report.items() if k.endswith("_ci") and isinstance(v, dict)}


# -- runs -----------------------------------------------------------------------------------------
def stage_rows(view: LabView, run: RunManifest) -> list[dict[str, Any]]:
    """The pipeline's stages with seconds, ran/cached, and the cost and run id of the stage run that made them."""
    makers = {f"{a.name}:{a.path.name}": a.run_id for a in view.artifacts()}
    rows = []
    for stage in run.stages:
        maker = makers.get(f"{stage.name}:{stage.key[:24]}")
        cost = view.by_id[maker].cost.total_usd if maker in view.by_id else None
        rows.append({"stage": stage.name, "status": stage.status, "seconds": round(stage.seconds, 2),
                     "cost_usd": cost, "run_id": maker, "key": stage.key[:12]})
    return rows


def missing_outputs(run: RunManifest) -> list[Missing]:
    """Outputs a manifest lists whose files are gone (deleted, or a run that died before writing them)."""
    return [Missing(f"{ref.kind} {ref.ref}", f"{ref.path} does not exist") for ref in run.outputs
            if "://" not in ref.path and not Path(ref.path).exists()]

"""One feedback round outside a pipeline: eval report → weaknesses → next dataset versions.

``nexa feedback`` and ``python orchestrate.py --stage feedback`` call :func:`feedback_round`. The
report is an ``eval_report.json`` (from ``nexa eval analyze/run`` or an eval stage); the dataset to
extend for each weak capability is the registered dataset its leaderboard row was measured on, or
the one named by ``--dataset CAPABILITY=ID@vN``; an eval-only task set is never grown, its new rows
go to the dataset ``<capability>-feedback`` (parents: the task set and that dataset's previous version).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from nexa.feedback.merge import MergeResult, next_version, targeted_rows
from nexa.feedback.review import decisions
from nexa.feedback.rules import Weakness, find_weaknesses, parse_rule
from nexa.feedback.teacher import teacher_rows
from nexa.ledger import ArtifactRef, Lab
from nexa.ledger.datasets import read_dataset_rows
from nexa.ledger.runs import list_runs


ROWS_PER_WEAKNESS = 500
# New rows are drawn from a stream the base datasets (seed 42) never use: the run's seed plus this offset.
SEED_OFFSET = 7919


def round_seed(seed: int) -> int:
    """The generator seed of a feedback round run with ``seed`` (CLI ``--seed`` or the pipeline's seed)."""
    return seed + SEED_OFFSET


@dataclass
class RoundResult:
    weaknesses: list[Weakness]
    merged: dict[str, MergeResult] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def record(self, lab: Lab, run) -> list[dict]:
        """Record each new version as the run's output and keep quarantined rows (with reasons) in durable
        storage beside the run: nothing is dropped silently. Returns the versions for the ``--json`` result."""
        outputs = []
        for merged in self.merged.values():
            m = merged.manifest
            run.add_output(ArtifactRef(kind="dataset", ref=m.ref, path=m.path, sha256=m.content_hash))
            outputs.append({"dataset": m.ref, "path": m.path, "sha256": m.content_hash, "parents": m.parents,
                            "added": merged.added, "quarantined": len(merged.quarantined)})
        quarantined = [q for m in self.merged.values() for q in m.quarantined]
        if quarantined:
            data = "".join(json.dumps(q, sort_keys=True) + "\n" for q in quarantined).encode()
            ref = lab.durable().put_bytes(f"feedback/{run.run_id}/quarantine.jsonl", data)
            run.add_output(ArtifactRef(kind="quarantine", ref=f"feedback:{run.run_id}", path=ref.path, sha256=ref.sha256))
        return outputs

    def payload(self, run_id: str, outputs: list[dict], report: Path) -> dict:
        """The ``--json`` result of ``nexa feedback``: the weaknesses found, what was skipped and why, the new versions."""
        return {"run_id": run_id, "status": "succeeded", "outputs": outputs, "report": str(report),
                "weaknesses": [w.model_dump() for w in self.weaknesses], "skipped": self.skipped,
                "new_versions": {c: m.manifest.ref for c, m in self.merged.items()}}


def latest_report(lab: Lab) -> Path:
    """The newest eval report of the lab: from ``nexa eval`` runs or from pipeline eval stages.

    Candidates are the reports run manifests point to and those in durable storage
    (``eval/<run>/`` and ``stages/<stage>/<key>/``); the most recently written one wins.
    """
    found = [Path(m.eval_report) for m in list_runs(lab) if m.eval_status == "done" and m.eval_report
             and m.eval_report.endswith("eval_report.json")]
    store = lab.durable()
    if store.is_local:
        root = Path(store.local_path(""))
        found += list(root.glob("eval/*/eval_report.json")) + list(root.glob("stages/*/*/eval_report.json"))
    else:
        found += _newest_remote_report(lab, store)
    existing = [p for p in found if p.exists()]
    if not existing:
        raise FileNotFoundError(f"no eval report in lab {lab.root}; run `nexa eval run --model PATH` first or pass --report PATH")
    return max(existing, key=lambda p: p.stat().st_mtime)


def _newest_remote_report(lab: Lab, store) -> list[Path]:
    """The newest eval report in a remote durable tier, as a verified local copy (none: empty list)."""
    keys = [k for k in store.list("eval") + store.list("stages") if k.endswith("/eval_report.json") and k.count("/") in (2, 3)]
    if not keys:
        return []
    newest = max(keys, key=store.modified)
    return [store.local_file(newest, lab.scratch / "durable-cache")]


def feedback_round(lab: Lab, report_path: Path, rules: list[str], datasets: dict[str, str], rows_per_weakness: int,
                   seed: int, created_by: str, roles: tuple[str, ...] = ("student",), models: list[str] | None = None,
                   teacher=None) -> RoundResult:
    """Find weaknesses in the report and write the next version of each weak capability's dataset.

    New rows come from the built-in generator of the capability, or from ``teacher`` (prompting)
    when one is given; a weakness with neither is reported as skipped, with the reason.
    """
    report = json.loads(Path(report_path).read_text())
    if "rows" not in report:
        raise ValueError(f"{report_path} is not an eval report (no 'rows'); expected eval_report.json from `nexa eval`")
    result = RoundResult(find_weaknesses(report["rows"], [parse_rule(r) for r in rules], roles=roles, models=models))
    reviewed = decisions(lab)
    for capability in sorted({w.capability for w in result.weaknesses}):
        parent = datasets.get(capability) or next(w.dataset for w in result.weaknesses if w.capability == capability)
        into = None if capability in datasets or _has_train(lab, parent) else f"{capability}-feedback"
        try:
            _, result.merged[capability] = grow_capability(lab, capability, parent, rows_per_weakness, seed, reviewed,
                                                        created_by, into=into, source=str(report_path), teacher=teacher)
        except KeyError as exc:
            result.skipped[capability] = str(exc.args[0])
    return result


def parse_targets(pairs: list[str]) -> dict[str, str]:
    """``--dataset CAPABILITY=ID@vN`` pairs as {capability: ref}; a pair without '=' is a user's mistake."""
    targets = {}
    for text in pairs:
        if "=" not in text:
            raise ValueError(f"--dataset {text!r} must be CAPABILITY=ID@vN")
        key, value = text.split("=", 1)
        targets[key.strip()] = value.strip()
    return targets


def feedback_run(lab: Lab, report_path: Path | None, rules: list[str], datasets: list[str], rows_per_weakness: int,
                 seed: int, teacher_url: str | None = None, teacher_model: str | None = None):
    """``nexa feedback``: one :func:`feedback_round` in a run of its own, on ``report_path`` (default: the lab's
    latest eval report). The teacher is opened before the run starts, so a URL without a model name leaves no
    failed run behind. Returns (run id, round result, recorded outputs, the report read)."""
    from nexa.ledger.console import command_run
    from nexa.teachers.opening import open_teacher

    report_path = report_path or latest_report(lab)
    targets = parse_targets(datasets)
    teacher = open_teacher(teacher_url, teacher_model) if teacher_url else None
    with command_run(lab, "feedback", config={"report": str(report_path), "rules": rules, "datasets": targets,
                                              "rows": rows_per_weakness, "teacher_url": teacher_url,
                                              "teacher_model": teacher_model}, seed=seed) as run:
        result = feedback_round(lab, report_path, rules, targets, rows_per_weakness, seed, run.run_id, teacher=teacher)
        return run.run_id, result, result.record(lab, run), report_path


def grow_capability(lab: Lab, capability: str, parent: str, rows: int, seed: int, reviewed, created_by: str,
                    into: str | None = None, source: str = "", teacher=None) -> tuple[list[dict], MergeResult]:
    """Targeted rows for one weak capability (its generator, or ``teacher``) and their merge into the next version.

    The one place a feedback round makes data: ``nexa feedback`` and the ``targeted_data`` stage both call it.
    ``seed`` is the run's seed; the rows come from :func:`round_seed` of it. Raises ``KeyError`` when the
    capability has no built-in generator and no teacher was given.
    """
    known = {r["prompt"] for r in read_dataset_rows(lab, parent)}
    new = (teacher_rows(teacher, capability, rows, round_seed(seed), known, lab=lab, run_id=created_by) if teacher is not None
           else targeted_rows(capability, rows, seed=round_seed(seed), exclude=known))
    return new, next_version(lab, parent, new, reviewed, created_by=created_by, into=into,
                             note=f"feedback{' from ' + source if source else ''}: {len(new)} targeted {capability} rows for {parent}")


def _has_train(lab: Lab, ref: str) -> bool:
    """An eval-only task set (built-in ``eval-*``) is never grown; its feedback goes to ``<capability>-feedback``."""
    return any(r.get("split") != "eval" for r in read_dataset_rows(lab, ref))

"""Nexa Auto's NIWT method: a teacher and a QA dataset become a pipeline of the lab's own NIWT stages.

NIWT does not fine-tune the picked model: it profiles a teacher, synthesizes a smaller student from the
profile, trains one adapter per capability (anchored distillation) and gates the student on retention.
Auto writes that as a pipeline file (``<lab>/configs/auto/niwt-*.yaml``) whose stages are the same
functions ``nexa niwt profile|synthesize|distill`` and ``pipelines/golden.yaml`` run, and runs it with
``nexa run`` as a child job, so the work has one door and every stage is cached and recorded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from nexa.ledger import Lab
from nexa.ledger.datasets import read_dataset_rows
from nexa.ledger.hashing import sha256_json
from nexa.ledger.listings import NIWT_VERIFICATION_ROWS, split_by_capability
from nexa.ledger.store import atomic_write_bytes
from nexa.train.sources import SUPPORTED_FAMILIES

NIWT_STAGES = ("data", "teacher", "distill", "teacher_registry", "router", "profile", "synthesize", "student_niwt")


class NiwtPlan(BaseModel):
    """What a NIWT run from auto will do: the pipeline and the numbers shown before it runs."""

    model_config = ConfigDict(extra="forbid")

    name: str
    dataset: str
    teacher: Path
    steps: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    capabilities: dict[str, dict[str, int]] = Field(description="capability -> rows per split (train, eval)")
    pipeline: dict[str, Any]

    def yaml(self) -> str:
        return yaml.safe_dump(self.pipeline, sort_keys=False)


def plan_niwt(lab: Lab, name: str, dataset: str, teacher, steps: int, batch_size: int) -> NiwtPlan:
    """The NIWT pipeline for ``teacher`` (a :class:`nexa.train.auto.ModelInfo`) on ``dataset``, sized to both.

    Raises ValueError when the teacher is not of a supported family (the student is synthesized from its layers)
    or the dataset is not QA rows with a train and a held-out split per capability.
    """
    config = json.loads((teacher.path / "config.json").read_text())
    if config.get("model_type") not in SUPPORTED_FAMILIES:
        raise ValueError(f"{teacher.path}: NIWT synthesizes its student in the teacher's family, one of "
                         f"{', '.join(SUPPORTED_FAMILIES)}; this one is {config.get('model_type')!r}; use kd for other models")
    grouped = split_by_capability(read_dataset_rows(lab, dataset), dataset)
    counts = {c: {s: sum(r["split"] == s for r in rows) for s in ("train", "eval")} for c, rows in grouped.items()}
    smallest = min(c["train"] for c in counts.values())
    if smallest < 8 + NIWT_VERIFICATION_ROWS:
        raise ValueError(f"{dataset}: NIWT profiles at least 8 training rows per capability plus {NIWT_VERIFICATION_ROWS} kept for "
                         f"verification; {min(counts, key=lambda c: counts[c]['train'])!r} has {smallest}")
    stages = _stages(name, dataset, teacher, int(config.get("num_attention_heads") or 1), sorted(counts),
                     smallest - NIWT_VERIFICATION_ROWS, steps, batch_size)
    pipeline = {"schema_version": 1, "name": name, "seed": 42, "stages": stages}
    return NiwtPlan(name=name, dataset=dataset, teacher=teacher.path, steps=steps, batch_size=batch_size,
                    capabilities=counts, pipeline=pipeline)


def _stages(name: str, dataset: str, teacher, heads: int, capabilities: list[str], profile_rows: int, steps: int,
            batch_size: int) -> list[dict]:
    samples = min(200, profile_rows)
    phase1 = max(1, steps // 3)
    profile = {"samples": samples, "pilot_samples": max(4, min(64, samples // 2)), "key_layers": min(3, teacher.layers),
               "components": max(2, min(32, teacher.hidden_size // 4)), "residual_components": min(64, teacher.hidden_size),
               "batch_size": min(50, samples)}
    student_heads = max(1, heads // 2)
    hidden = max(8, teacher.hidden_size // 2 // student_heads * student_heads)
    arch = {"backbone": {"hidden_size": hidden, "num_hidden_layers": max(1, teacher.layers // 2),
                         "num_attention_heads": student_heads, "intermediate_size": 4 * hidden},
            "max_param_ratio": 0.75}
    distill = {"phase1_steps": phase1, "phase2_steps": steps - phase1, "check_every": max(1, steps // 2),
               "batch_size": batch_size, "anchor_batch": min(16, batch_size)}
    teacher_row = {"ModelName": teacher.path.name, "Parameters": f"{teacher.parameters / 1e6:.3f}M", "Category": "text",
                   "BestFeature": ";".join(capabilities)}
    return [
        {"name": "data", "uses": "nexa.data.stages:capability_split", "with": {"dataset": dataset, "prefix": f"{name}-niwt"}},
        {"name": "teacher", "uses": "nexa.teachers.stages:local_checkpoint", "with": {"path": str(teacher.path)}},
        {"name": "distill", "uses": "nexa.teachers.stages:materialize_local", "needs": ["teacher", "data"],
         "run_type": "distill", "with": {"dataset_id": f"{name}-niwt-distill"}},
        {"name": "teacher_registry", "uses": "nexa.niwt.stages:teacher_registry", "with": {"teachers": [teacher_row]}},
        {"name": "router", "uses": "nexa.niwt.stages:router", "needs": ["data"]},
        {"name": "profile", "uses": "nexa.niwt.stages:profile", "needs": ["teacher", "distill", "data", "teacher_registry"],
         "with": {"teacher_name": teacher.path.name, "config": profile}},
        {"name": "synthesize", "uses": "nexa.niwt.stages:synthesize", "needs": ["teacher", "profile"], "with": {"arch": arch}},
        {"name": "student_niwt", "uses": "nexa.niwt.stages:student_niwt",
         "needs": ["profile", "synthesize", "distill", "data", "router"], "run_type": "distill",
         "with": {"config": distill, "max_attempts": 2, "retry_steps": max(1, steps // 2)}},
    ]


def write_pipeline(lab: Lab, plan: NiwtPlan) -> Path:
    """``<lab>/configs/auto/niwt-<name>-<hash>.yaml``, written atomically (same plan, same file)."""
    path = lab.root / "configs" / "auto" / f"niwt-{plan.name}-{sha256_json(plan.pipeline)[:10]}.yaml"
    atomic_write_bytes(path, plan.yaml().encode())
    return path


def niwt_job(lab: Lab, pipeline_file: Path, command) -> list[str]:
    return command("run", str(pipeline_file), "--lab", str(lab.root), "--json")


def outcome(result: dict) -> dict:
    """The gate and artifacts of a finished NIWT pipeline (``nexa run --json``), from its student's gate report."""
    paths = {o["stage"]: Path(o["path"]) for o in result["outputs"]}
    student = paths["student_niwt"]
    return {**gate_report(student / "gate_report.json"), "pipeline_run_id": result["run_id"], "profile": str(paths["profile"])}


def failed_gate(lab: Lab, since: float) -> dict | None:
    """The gate report a failing ``student_niwt`` left in scratch after ``since`` (None: it failed elsewhere)."""
    reports = [p for p in (lab.scratch / "work").glob("student_niwt-*/gate_report.json") if p.stat().st_mtime >= since - 1]
    return gate_report(max(reports, key=lambda p: p.stat().st_mtime)) if reports else None


def gate_report(path: Path) -> dict:
    """The last gate attempt of a ``gate_report.json``, how many there were, and the student model beside it."""
    attempts = json.loads(path.read_text())["attempts"]
    return {"gate": attempts[-1], "attempts": len(attempts), "gate_report": str(path), "model": str(path.parent / "model")}


# -- asking and running (called by `nexa auto`) ---------------------------------------------------
def ask_niwt(lab: Lab, asker, flags: dict, info, dataset: str, option, plan) -> tuple[NiwtPlan, Any]:
    """The teacher (default: the model picked), batch size and steps of a NIWT run; its plan and the teacher."""
    from nexa.train.auto_commands import _ask_until_valid, _positive_int

    if flags["teacher"]:
        teacher = plan.inspect_model(flags["teacher"])
    else:
        teacher = _ask_until_valid(asker, "--teacher", "Teacher model to distill (NIWT synthesizes the student from it)?",
                                   str(info.path), plan.inspect_model)
    batch = flags["batch_size"] or int(asker.text("--batch-size", "Batch size?", str(min(option.batch_size, 16)), _positive_int))
    steps = flags["steps"] or int(asker.text("--steps", "Distillation steps?", "100", _positive_int))
    name = flags["name"] or f"auto-{teacher.path.name}"
    return plan_niwt(lab, name, dataset, teacher, steps, batch), teacher


def run_niwt(lab: Lab, pipeline_file: Path, env: dict[str, str]) -> dict:
    """Run the NIWT pipeline as a ``nexa run`` child (stage progress on this terminal), then show the gate."""
    import time

    import typer

    from nexa.ledger.console import console
    from nexa.train.auto import JobError, nexa_command, run_job

    started = time.time()
    try:
        result = outcome(run_job(niwt_job(lab, pipeline_file, nexa_command), env))
    except KeyboardInterrupt:
        console.print(f"\ninterrupted: the pipeline is kept in {pipeline_file} (a second run reuses the finished stages); "
                      "your session is untouched", highlight=False)
        raise typer.Exit(130) from None
    except JobError:
        failed = failed_gate(lab, started)
        if failed is None:
            raise
        show_gate(failed, pipeline_file, None)
        reasons = "; ".join(f"{c}: {why}" for c, why in sorted(failed["gate"]["reasons"].items()))
        raise JobError(f"the NIWT gate failed ({reasons}); the student is kept in scratch for inspection, nothing was "
                       f"registered; see {failed['gate_report']}", 1) from None
    show_gate(result, pipeline_file, result["pipeline_run_id"])
    return {"run_id": result["pipeline_run_id"], "status": "succeeded", "config": str(pipeline_file), "method": "niwt",
            "model": result["model"], "gate": result["gate"], "gate_report": result["gate_report"]}


def show_gate(result: dict, pipeline_file: Path, run_id: str | None) -> None:
    """The retention gate per capability, then where every artifact is."""
    from nexa.ledger.console import console, table

    gate = result["gate"]
    rows = [(c, gate["teacher_scores"].get(c), gate["student_scores"].get(c), r) for c, r in gate["retention"].items()]
    console.print(table(f"NIWT gate: {'PASSED' if gate['passed'] else 'FAILED'} after {result['attempts']} attempt(s)",
                        ["capability", "teacher", "student", "retention"], rows))
    where = [("pipeline", str(pipeline_file)), ("pipeline run", run_id or "failed (see `nexa runs list`)"),
             ("student model", result["model"]), ("gate report", result["gate_report"])]
    console.print(table("artifacts", ["", ""], where))

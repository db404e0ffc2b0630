"""Time every stage of the golden pipeline in a fresh lab, then the fully cached rerun.

    python benchmarks/golden.py --out benchmarks/results/golden.json

    python benchmarks/golden.py --jobs 2 --compare-jobs 1 --out FILE   # also the one-stage-at-a-time run, same machine

Prints a table and writes {"stages": {name: seconds}, "stage_spans": {name: [start, end]} (seconds from the
pipeline's start: which stages overlapped), "jobs", "total_seconds", "rerun_seconds",
"retention", "retention_ci" {cap: [lo, hi]} (95%), "eval_prompts" {cap: n}, "teacher_scores",
"student_scores" (the verified bundle's), "sft_baseline_scores" (the SFT-only baseline trained on the
small labelled set), "feedback"} (feedback appears once the pipeline has a feedback round); with
``--compare-jobs N`` also {"compare": {"jobs": N, "total_seconds", "stages"}, "speedup_vs_compare"}, the same
pipeline in another fresh lab right after.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


def run_demo(lab: Path, jobs: int | None) -> tuple[dict, float]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "nexa.cli", "demo", "--lab", str(lab), "--json",
                           *(["--jobs", str(jobs)] if jobs else [])], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"nexa demo failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout), time.perf_counter() - started


def stage_summary(lab: Path, name: str) -> dict:
    """The summary a stage recorded in the lab (one run of the pipeline, so one record)."""
    record = next(lab.glob(f".nexa/durable/stages/{name}/*/stage.json"))
    return json.loads(record.read_text())["summary"]


def run_events(lab: Path, run_id: str) -> list[dict]:
    return [json.loads(line) for line in (lab / "runs" / "logs" / f"{run_id}.jsonl").read_text().splitlines()]


def stage_spans(lab: Path, run_id: str) -> dict[str, list[float]]:
    """When each stage that ran started and ended, in seconds from the pipeline's start (its run log)."""
    from datetime import datetime

    events = run_events(lab, run_id)
    start = datetime.fromisoformat(events[0]["ts"])
    spans = {}
    for event in events:
        if event["event"] == "stage_ran":
            end = (datetime.fromisoformat(event["ts"]) - start).total_seconds()
            spans[event["stage"]] = [round(end - event["seconds"], 2), round(end, 2)]
    return spans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--lab", type=Path, default=None, help="Lab folder (default: a temporary one).")
    parser.add_argument("--jobs", type=int, default=None, help="`nexa demo --jobs` (default: the demo's own default).")
    parser.add_argument("--compare-jobs", type=int, default=None, help="Also run the demo with this many jobs, after.")
    args = parser.parse_args()
    lab = args.lab or Path(tempfile.mkdtemp(prefix="nexa-golden-")) / "lab"
    first, total = run_demo(lab, args.jobs)
    second, rerun = run_demo(lab, args.jobs)
    verify = json.loads(Path(first["verify_report"]).read_text())
    pipeline = json.loads((lab / "runs" / "manifests" / f"{first['run_id']}.json").read_text())
    result = {
        "stages": {s["name"]: s["seconds"] for s in first["stages"]},
        "stage_spans": stage_spans(lab, first["run_id"]),
        "jobs": next(e["jobs"] for e in run_events(lab, first["run_id"]) if e["event"] == "pipeline_started"),
        "cost_compute_hours": pipeline["cost"]["compute_hours"],
        "total_seconds": round(total, 2),
        "rerun_seconds": round(rerun, 2),
        "rerun_all_cached": all(s["status"] == "cached" for s in second["stages"]),
        "retention": verify["retention"],
        "teacher_scores": verify["teacher_scores"],
        "student_scores": verify["student_scores"],
        "retention_ci": verify["retention_ci"],
        "eval_prompts": verify["eval_prompts"],
        "sft_baseline_scores": stage_summary(lab, "eval")["scores"]["baseline"],
    }
    feedback = next((json.loads(p.read_text()) for p in lab.glob(".nexa/durable/stages/feedback*/*/feedback.json")), None)
    if feedback is not None:
        result["feedback"] = feedback
    if args.compare_jobs is not None:
        other_lab = Path(tempfile.mkdtemp(prefix="nexa-golden-compare-")) / "lab"
        other, other_total = run_demo(other_lab, args.compare_jobs)
        result["compare"] = {"jobs": args.compare_jobs, "total_seconds": round(other_total, 2),
                             "stages": {s["name"]: s["seconds"] for s in other["stages"]}}
        result["speedup_vs_compare"] = round(other_total / total, 3)
        shutil.rmtree(other_lab.parent, ignore_errors=True)
    table = Table(title=f"golden pipeline ({result['jobs']} jobs): {total:.1f}s, rerun {rerun:.1f}s"
                        + (f"; {args.compare_jobs} jobs: {result['compare']['total_seconds']:.1f}s" if "compare" in result else ""))
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    for name, seconds in result["stages"].items():
        table.add_row(name, f"{seconds:.2f}")
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True))
    if args.lab is None:
        shutil.rmtree(lab.parent, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Time every stage of the golden pipeline in a fresh lab, then the fully cached rerun.

    python benchmarks/golden.py --out benchmarks/results/golden.json

Prints a table and writes {"stages": {name: seconds}, "total_seconds", "rerun_seconds",
"retention", "retention_ci" {cap: [lo, hi]} (95%), "eval_prompts" {cap: n}, "teacher_scores",
"student_scores" (the verified bundle's), "sft_baseline_scores" (the SFT-only baseline trained on the
small labelled set), "feedback"} (feedback appears once the pipeline has a feedback round).
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


def run_demo(lab: Path) -> tuple[dict, float]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "nexa.cli", "demo", "--lab", str(lab), "--json"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"nexa demo failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout), time.perf_counter() - started


def stage_summary(lab: Path, name: str) -> dict:
    """The summary a stage recorded in the lab (one run of the pipeline, so one record)."""
    record = next(lab.glob(f".nexa/durable/stages/{name}/*/stage.json"))
    return json.loads(record.read_text())["summary"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--lab", type=Path, default=None, help="Lab folder (default: a temporary one).")
    args = parser.parse_args()
    lab = args.lab or Path(tempfile.mkdtemp(prefix="nexa-golden-")) / "lab"
    first, total = run_demo(lab)
    second, rerun = run_demo(lab)
    verify = json.loads(Path(first["verify_report"]).read_text())
    result = {
        "stages": {s["name"]: s["seconds"] for s in first["stages"]},
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
    table = Table(title=f"golden pipeline: {total:.1f}s, rerun {rerun:.1f}s")
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

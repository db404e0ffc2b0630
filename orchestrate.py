#!/usr/bin/env python
"""The spec's quickstart entry point (v1 §15), mapped onto the `nexa` command.

    python orchestrate.py --stage data_gen --dataset plasma_v1 [--task reasoning --n 1000]
    python orchestrate.py --stage train --config configs/sft_tiny.yaml
    python orchestrate.py --stage train --mode distill --teacher PATH|URL --student PRESET --dataset ID@vN
    python orchestrate.py --stage eval --run_id 2025-10-28_141200-abc123
    python orchestrate.py --stage feedback [--report PATH]

Names that cannot be resolved here (a hosted model such as ``gpt-4o`` with no endpoint configured,
a student preset that does not exist) get a message saying what to configure, not a traceback.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent
STUDENT_PRESETS = {
    "tiny": {"hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 256},
    "small": {"hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4},
}


class Unresolvable(Exception):
    """A name on the command line that this lab cannot turn into something runnable."""


def nexa(*args: str) -> int:
    return subprocess.call([sys.executable, "-m", "nexa.cli", *args])


def resolve_teacher(name: str) -> str:
    if re.match(r"^https?://", name):
        return name
    path = Path(name).expanduser()
    if path.is_dir() and (path / "config.json").exists():
        return str(path.resolve())
    raise Unresolvable(
        f"teacher {name!r} is neither a local checkpoint folder (with config.json, *.safetensors and tokenizer.json) "
        f"nor an OpenAI-compatible URL. To distill from a hosted model, materialize its answers first:\n"
        f"  export OPENAI_API_KEY=...\n"
        f"  nexa distill materialize --dataset ID --teacher https://api.openai.com/v1 --teacher-model {name} --out ID-distill\n"
        f"then train a student on that dataset with `nexa train --config ...` (method: sft on the paired data)."
    )


def resolve_student(name: str) -> dict:
    if name in STUDENT_PRESETS:
        return STUDENT_PRESETS[name]
    raise Unresolvable(
        f"student {name!r} is not a preset here (known: {sorted(STUDENT_PRESETS)}). Hub models are never downloaded; "
        "to start from pretrained weights, pass a local folder through a training config (`nexa train --config`)."
    )


def distill_pipeline(teacher: str, student: dict, dataset: str, steps: int) -> dict:
    if teacher.startswith("http"):
        raise Unresolvable("an API teacher gives text, not logits: use `nexa distill materialize` and then SFT on the pairs")
    return {
        "schema_version": 1, "name": "orchestrate-distill", "seed": 42,
        "stages": [
            {"name": "data", "uses": "nexa.data.stages:registered", "with": {"datasets": {"all": dataset}}},
            {"name": "teacher", "uses": "nexa.teachers.stages:local_checkpoint", "with": {"path": teacher}},
            {"name": "distill", "uses": "nexa.teachers.stages:materialize_local", "needs": ["teacher", "data"],
             "with": {"dataset_id": f"{dataset.split('@')[0]}-distill"}},
            {"name": "pack", "uses": "nexa.train.stages:pack", "needs": ["distill", "teacher"],
             "with": {"source": "distill", "tokenizer": "teacher", "seq_len": 128}},
            {"name": "student_kd", "uses": "nexa.train.stages:student_kd", "needs": ["pack", "teacher"], "run_type": "distill",
             "with": {"size": student, "max_param_ratio": 1.0, "kd": {"loss": "forward_kl", "temperature": 1.0, "alpha": 0.5},
                      "optim": {"max_steps": steps, "batch_size": 16, "learning_rate": 0.003, "warmup_steps": 30}}},
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", required=True, choices=["data_gen", "train", "eval", "feedback"])
    parser.add_argument("--lab", default=".", help="Lab folder (created for data_gen if missing).")
    parser.add_argument("--dataset")
    parser.add_argument("--task", default="reasoning")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--config")
    parser.add_argument("--mode", choices=["sft", "distill"], default="sft")
    parser.add_argument("--teacher")
    parser.add_argument("--student")
    parser.add_argument("--steps", type=int, default=600, help="Student training steps for --mode distill.")
    parser.add_argument("--run_id", "--run-id", dest="run_id")
    parser.add_argument("--report")
    args, extra = parser.parse_known_args(argv)
    try:
        return dispatch(args, extra)
    except Unresolvable as exc:
        print(f"orchestrate: {exc}", file=sys.stderr)
        return 2


def dispatch(args, extra: list[str]) -> int:
    if args.stage == "data_gen":
        if not args.dataset:
            raise Unresolvable("--stage data_gen needs --dataset ID (the name of the new dataset)")
        if nexa("init", args.lab) != 0:
            return 1
        return nexa("data", "generate", "--task", args.task, "--n", str(args.n), "--dataset", args.dataset, "--lab", args.lab, *extra)
    if args.stage == "train":
        if args.config:
            return nexa("train", "--config", args.config, *extra)
        if args.mode == "distill":
            if not (args.teacher and args.student and args.dataset):
                raise Unresolvable("--mode distill needs --teacher, --student and --dataset ID@vN")
            spec = distill_pipeline(resolve_teacher(args.teacher), resolve_student(args.student), args.dataset, args.steps)
            pipeline = Path(args.lab) / "pipelines" / "orchestrate-distill.yaml"
            pipeline.parent.mkdir(parents=True, exist_ok=True)
            pipeline.write_text(yaml.safe_dump(spec, sort_keys=False))
            return nexa("run", str(pipeline), "--lab", args.lab, *extra)
        raise Unresolvable("--stage train needs --config FILE (see configs/) or --mode distill with --teacher/--student")
    if args.stage == "eval":
        if not args.run_id:
            raise Unresolvable("--stage eval needs --run_id (see `nexa runs list`)")
        return nexa("eval", "run", "--run-id", args.run_id, "--lab", args.lab, *extra)
    return nexa("feedback", "--lab", args.lab, *([f"--report={args.report}"] if args.report else []), *extra)


if __name__ == "__main__":
    sys.exit(main())

"""NIWT ablations against the same teacher, data and gate as ``niwt_vs_kd.py``: steps and seconds to the gate.

Each variant overrides the NIWT run (distillation config, gate retries) and optionally the synthesis
(``arch``: a ``student_arch.json`` body, built once as an extra cached ``synthesize`` stage in the work folder),
and trains in its own spawned process; every optimizer step counts, gate retries included.

    PYTHONPATH=src python benchmarks/niwt_ablations.py --work /tmp/nexa-niwt-vs-kd --variants variants.json \\
        --out benchmarks/results/niwt_ablations.json [--teacher-size ... --teacher-steps ... --eval-rows ...]

``variants.json``: ``[{"name": "rank8", "options": {"config": {...}, "retry_steps": n, "max_attempts": n},
"arch": {...}}, ...]``. Results are appended to ``--out`` as each variant finishes (a rerun skips names already there).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from niwt_vs_kd import measure, shared_stages, synthesize_variant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/nexa-niwt-vs-kd"))
    parser.add_argument("--variants", type=Path, required=True)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--max-steps", type=int, default=600)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--teacher-size", type=json.loads, default=None)
    parser.add_argument("--teacher-steps", type=int, default=None)
    parser.add_argument("--eval-rows", type=int, default=None)
    parser.add_argument("--reuse-prepared", action="store_true",
                        help="Take the shared stage outputs recorded in the work folder as they are (see shared_stages).")
    args = parser.parse_args()
    shared = shared_stages(args.work, args.reuse_prepared, args.teacher_size, args.teacher_steps, args.eval_rows)
    done = json.loads(args.out.read_text()) if args.out.exists() else []
    for variant in json.loads(args.variants.read_text()):
        if any(row["name"] == variant["name"] for row in done):
            continue
        options = dict(variant.get("options", {}))
        if variant.get("arch"):
            options["synthesize"] = synthesize_variant(shared, variant["arch"], variant["name"])
        result = measure("niwt", shared, args.eval_every, args.max_steps, args.seed, options)
        row = {"name": variant["name"], "options": variant.get("options", {}), "arch": variant.get("arch"),
               **{k: result[k] for k in ("steps_to_gate", "seconds", "steps_run", "gate_attempts", "retention",
                                         "student_params", "peak_mem_mb", "curve")}}
        done.append(row)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(done, indent=2, sort_keys=True))
        kept = " / ".join(f"{r:.3f}" for _, r in sorted(result["retention"].items()))
        print(f"{variant['name']:<28} gate@{result['steps_to_gate']}  {result['seconds']:.1f}s  steps {result['steps_run']}  "
              f"attempts {result['gate_attempts']}  retention {kept}  params {result['student_params']}", flush=True)


if __name__ == "__main__":
    main()

"""NIWT is reproducible across processes: profile -> synthesize -> student_niwt give the same artifacts whether
they run in one fresh process or student_niwt runs in another one after the first two were cached, with
different PYTHONHASHSEED values and different amounts of torch RNG used before.

The cached case is the one that bit: two `nexa demo` runs of one lab gave different NIWT gate curves, because
the LoRA adapters were initialised from torch's global RNG, whose state depended on which earlier stages had
run (synthesize seeds it) or been cached in that process.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml
from safetensors.torch import load_file
from test_stages import STAGES

from nexa.ledger import Lab
from nexa.pipeline.runner import run_pipeline
from nexa.pipeline.spec import load_pipeline

NIWT_STAGES = ("profile", "synthesize", "student_niwt")
STUDENT = {"config": {"phase1_steps": 4, "phase2_steps": 4, "check_every": 4, "batch_size": 8, "anchor_batch": 4,
                      "teacher_floor": 0.0}, "max_attempts": 1}
CHILD = textwrap.dedent("""
    import sys, torch
    from pathlib import Path
    torch.set_num_threads(1)
    torch.rand(int(sys.argv[3]))  # RNG used by whatever ran earlier in this process
    from nexa.ledger import Lab
    from nexa.pipeline.runner import run_pipeline
    from nexa.pipeline.spec import load_pipeline
    run_pipeline(Lab.find(Path(sys.argv[1])), load_pipeline(Path(sys.argv[2])))
""")


def _spec(root: Path, stages: list[dict], name: str) -> Path:
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"schema_version": 1, "name": "niwt-repro", "seed": 42, "stages": stages}))
    return path


def _stage(lab: Path, name: str) -> Path:
    (folder,) = (lab / ".nexa" / "durable" / "stages" / name).iterdir()
    return folder


def _artifacts(lab: Path) -> dict:
    """Every tensor and every JSON result of the NIWT stages (file bytes aside: safetensors' header order and
    timings are not results)."""
    found = {}
    for name in NIWT_STAGES:
        folder = _stage(lab, name)
        for file in sorted(folder.rglob("*.safetensors")):
            for key, tensor in load_file(str(file)).items():
                found[f"{file.relative_to(folder)}:{key}"] = tensor
    found["synthesis.json"] = json.loads((_stage(lab, "synthesize") / "synthesis.json").read_text())
    summary = json.loads((_stage(lab, "student_niwt") / "stage.json").read_text())["summary"]
    found["student_niwt"] = {k: summary[k] for k in ("gate_attempts", "loss_curve", "checks", "alpha", "model_sha256")}
    return found


def test_niwt_stages_give_the_same_artifacts_in_fresh_processes(tmp_path):
    stages = [dict(s) for s in STAGES]
    stages[-1] = {**stages[-1], "with": STUDENT}
    upstream = [s for s in stages if s["name"] not in NIWT_STAGES]
    base = Lab.init(tmp_path / "base")
    run_pipeline(base, load_pipeline(_spec(tmp_path, upstream, "upstream")))  # shared inputs, built once
    full = _spec(tmp_path, stages, "full")
    until_synthesis = _spec(tmp_path, stages[:-1], "until-synthesis")
    runs = {"one-process": [(full, "1", 0)], "student-alone": [(until_synthesis, "2", 0), (full, "3", 1000)]}
    results = []
    for name, steps in runs.items():
        lab = tmp_path / name
        shutil.copytree(base.root, lab)
        for spec, hash_seed, burn in steps:
            env = {**os.environ, "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "1"}
            done = subprocess.run([sys.executable, "-c", CHILD, str(lab), str(spec), str(burn)], env=env,
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr[-3000:]
        results.append(_artifacts(lab))
    first, second = results
    assert first.keys() == second.keys() and any(k.startswith("adapters/") for k in first)
    for key in first:
        if key.endswith((".json", "student_niwt")):
            assert first[key] == second[key], key
        else:
            assert first[key].equal(second[key]), key

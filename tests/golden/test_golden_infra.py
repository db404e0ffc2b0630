"""The golden pipeline through `nexa infra launch --backend local`: node SIGKILLed midway, launched again, finished.

The durable tier is a bucket on a real S3 API (moto's server on localhost, reached by s3fs over
HTTP); scratch is the node's own folder. The artifact hashes are compared with the uninterrupted run
the ``golden`` fixture already made (durable folder in its lab), so the pipeline runs once more here,
not twice.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import yaml

from nexa.ledger import Lab
from nexa.ledger.runs import list_runs
from nexa.ledger.store import DurableStore
from nexa.pipeline.spec import install_builtin_pipelines
from s3_server import new_bucket, s3  # noqa: F401 - s3 is a fixture

NEXA = [sys.executable, "-m", "nexa.cli"]
LAUNCH_KEYS = {"cluster", "backend", "run_id", "status", "durable", "cost_usd", "teardown"}
# Stages whose outputs are the same bytes in any two runs (datasets, tokenizer, teacher/student weights,
# packs, feedback data), measured by running the golden pipeline twice. The others record wall-clock
# measurements (eval latency, router/profile/NIWT timings) or their own run id (bundle, verify, report),
# so two uninterrupted runs differ there as well.
DETERMINISTIC = ["data", "tokenizer", "teacher", "distill", "pack", "teacher_registry", "synthesize", "student_kd", "baseline",
                 "weak_data", "student_before", "weakness", "feedback_data", "student_after", "feedback"]


def _launch(lab: Path, durable: str) -> subprocess.Popen:
    return subprocess.Popen([*NEXA, "infra", "launch", "--pipeline", "pipelines/golden.yaml", "--backend", "local",
                             "--durable", durable, "--budget", "50", "--json"],
                            cwd=lab, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _committed(durable: str, stage: str) -> bool:
    bucket, prefix = durable[len("s3://"):].split("/", 1)
    listing = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/stages/{stage}/")
    return any(o["Key"].endswith("/stage.json.sha256") for o in listing.get("Contents", []))


def test_golden_launch_killed_midway_resumes_from_s3_with_the_same_artifacts(golden, s3, tmp_path):
    lab = Lab.init(tmp_path / "lab")
    install_builtin_pipelines(lab)
    config = yaml.safe_load((lab.root / "nexa.yaml").read_text())
    config["prices"] = {"compute": {"local": {"cpu": 0.9}}}  # what an equivalent cloud CPU node would bill
    (lab.root / "nexa.yaml").write_text(yaml.safe_dump(config))
    durable = new_bucket() + "/lab"

    first = _launch(lab.root, durable)
    deadline = time.monotonic() + 600
    while not _committed(durable, "tokenizer") and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.5)
    record = json.loads((lab.root / "runs" / "clusters" / "nexa-golden.json").read_text())
    os.killpg(record["pid"], signal.SIGKILL)  # the node, inside the teacher stage (it follows tokenizer)
    out, err = first.communicate(timeout=120)
    killed = json.loads(out)
    assert first.returncode == 1 and killed["status"] == "failed" and killed["teardown"] is True, err[-2000:]
    assert not Path(record["scratch"]).parent.exists()

    second = _launch(lab.root, durable)
    out, err = second.communicate(timeout=1200)
    assert second.returncode == 0, err[-3000:]
    result = json.loads(out)
    assert set(result) == LAUNCH_KEYS and result["status"] == "succeeded" and result["teardown"] is True
    assert result["backend"] == "local" and result["durable"] == durable and result["cost_usd"] > 0
    assert not Path(json.loads((lab.root / "runs" / "clusters" / "nexa-golden.json").read_text())["scratch"]).parent.exists()

    manifest = next(m for m in list_runs(lab) if m.run_id == result["run_id"])
    statuses = {s.name: s.status for s in manifest.stages}
    assert statuses["data"] == statuses["tokenizer"] == "cached" and statuses["teacher"] == "ran"  # nothing committed was lost
    resumed = {s.name: s.outputs_sha256 for s in manifest.stages}
    uninterrupted = {o["stage"]: o["sha256"] for o in golden["first"]["outputs"]}
    assert set(resumed) == set(uninterrupted)
    assert {k: resumed[k] for k in DETERMINISTIC} == {k: uninterrupted[k] for k in DETERMINISTIC}
    # Cost per stage: every stage that ran has its own costed run; the pipeline's cost is their sum.
    ran = [s for s in manifest.stages if s.status == "ran"]
    assert ran and all(s.cost_usd > 0 and s.run_id for s in ran)
    assert abs(manifest.cost.total_usd - sum(s.cost_usd for s in ran)) < 1e-9
    # The durable copy is on the S3 server: every stage's committed output, the run manifests, the node log.
    store = DurableStore(durable)
    assert all(store.exists(f"stages/{s.name}/{s.key[:24]}/stage.json") for s in manifest.stages)
    assert all(store.exists(f"manifests/{run_id}.json") for run_id in [result["run_id"], *(s.run_id for s in ran)])
    assert store.exists("nodes/nexa-golden/nexa-golden.log") and not (lab.root / ".nexa" / "durable" / "stages").exists()
    report = subprocess.run([*NEXA, "cost", "report", "--by", "stage", "--json"], cwd=lab.root, capture_output=True, text=True, timeout=300)
    rows = json.loads(report.stdout)["rows"]
    assert {r["stage"] for r in rows if r["run_id"] == result["run_id"]} == {s.name for s in ran}

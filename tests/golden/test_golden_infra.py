"""The golden pipeline through `nexa infra launch --backend local`: node SIGKILLed midway, launched again, finished.

The durable tier is a bucket on a real S3 API (moto's server on localhost, reached by s3fs over
HTTP); scratch is the node's own folder. The launches themselves are made in the background from the
session's start (``launch_killed_then_relaunched`` in golden_background.py); this test asserts on what they
observed. The bucket starts with the demo's committed stages from teacher to verify (``SEEDED``), so the golden
pipeline is not trained a second time for this test: the node runs data, tokenizer and the feedback round on S3
itself and reuses the rest. The artifact hashes are compared with the uninterrupted run the ``golden`` fixture made.
"""

import json
import subprocess
import sys

from golden_background import SEEDED
from nexa.ledger import Lab
from nexa.ledger.runs import list_runs
from nexa.ledger.store import DurableStore
from s3_server import S3_ENV, forget_s3_clients

NEXA = [sys.executable, "-m", "nexa.cli"]
LAUNCH_KEYS = {"cluster", "backend", "run_id", "status", "durable", "cost_usd", "teardown"}
# Stages whose outputs are the same bytes in any two runs (datasets, tokenizer, teacher/student weights,
# packs, feedback data), measured by running the golden pipeline twice. The others record wall-clock
# measurements (eval latency, router/profile/NIWT timings) or their own run id (bundle, verify, report),
# so two uninterrupted runs differ there as well.
DETERMINISTIC = ["data", "tokenizer", "teacher", "distill", "pack", "teacher_registry", "synthesize", "student_kd", "baseline",
                 "weak_data", "student_before", "weakness", "feedback_data", "student_after", "feedback"]


def test_golden_launch_killed_midway_resumes_from_s3_with_the_same_artifacts(golden, golden_relaunch, monkeypatch):
    run = golden_relaunch
    for key, value in {**S3_ENV, "AWS_ENDPOINT_URL": run["endpoint"]}.items():
        monkeypatch.setenv(key, value)
    forget_s3_clients()
    lab, durable = Lab(run["lab"]), run["durable"]
    killed, relaunched = run["killed"], run["relaunched"]
    assert killed["returncode"] == 1, killed["stderr"][-2000:]
    killed_result = json.loads(killed["stdout"])
    assert killed_result["status"] == "failed" and killed_result["teardown"] is True and not killed["scratch_left"]

    assert relaunched["returncode"] == 0, relaunched["stderr"][-3000:]
    result = json.loads(relaunched["stdout"])
    assert set(result) == LAUNCH_KEYS and result["status"] == "succeeded" and result["teardown"] is True
    assert result["backend"] == "local" and result["durable"] == durable and result["cost_usd"] > 0
    assert not relaunched["scratch_left"]

    # The killed node ran data and tokenizer on S3 itself (their hashes give the seeded stages' keys), reused the
    # seeded stages, committed weak_data and died inside student_before.
    pipelines = [m for m in list_runs(lab) if m.run_type == "pipeline"]
    (killed_run,) = [m for m in pipelines if m.run_id != result["run_id"]]
    before_kill = {s.name: s.status for s in killed_run.stages}
    expected = {"data": "ran", "tokenizer": "ran", **{name: "cached" for name in SEEDED}}
    assert {name: before_kill.get(name) for name in expected} == expected and "student_before" not in before_kill
    manifest = next(m for m in pipelines if m.run_id == result["run_id"])
    statuses = {s.name: s.status for s in manifest.stages}
    committed = ["data", "tokenizer", *SEEDED, "weak_data"]
    assert [s.name for s in manifest.stages if s.status == "cached"] == committed  # nothing committed was lost
    assert statuses["student_before"] == "ran" and statuses["report"] == "ran"
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

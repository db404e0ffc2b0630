"""`nexa feedback` finds the newest eval report when the durable tier is on S3 (moto's server), as a verified local copy."""

import json
import time

from nexa.feedback.loop import latest_report
from s3_server import new_bucket, s3  # noqa: F401 - s3 is a fixture


def test_latest_report_on_s3_is_the_newest_one_copied_to_scratch(s3, lab, monkeypatch, tmp_path):
    monkeypatch.setenv("NEXA_DURABLE", new_bucket() + "/lab")
    monkeypatch.setenv("NEXA_SCRATCH", str(tmp_path / "scratch"))
    store = lab.durable()
    store.put_bytes("eval/r-old/eval_report.json", json.dumps({"rows": [], "which": "old"}).encode())
    time.sleep(1.1)  # object timestamps have one-second resolution
    store.put_bytes("stages/eval/abc/eval_report.json", json.dumps({"rows": [], "which": "new"}).encode())
    report = latest_report(lab)
    assert json.loads(report.read_text())["which"] == "new" and report.is_relative_to(tmp_path / "scratch")

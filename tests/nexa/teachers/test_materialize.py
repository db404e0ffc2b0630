"""``nexa distill materialize`` against a flaky OpenAI-compatible server: exactly-once answers, exact cost, no leaks."""

from __future__ import annotations

import json
import math
import re

from fake_teacher_server import MODEL, PRICE, SECRET, FakeTeacherServer, make_prompts, teacher_answer
from typer.testing import CliRunner

from nexa.cli import app
from nexa.ledger.datasets import read_dataset_manifest, read_dataset_rows
from nexa.ledger.runs import load_run


def materialize(lab, server, dataset, *extra: str, out: str = "paired", env: dict | None = None):
    args = ["distill", "materialize", "--lab", str(lab.root), "--dataset", dataset, "--teacher", server.url,
            "--teacher-model", MODEL, "--out", out, "--api-key-env", "TEST_TEACHER_KEY", "--json",
            "--backoff-s", "0.01", "--max-backoff-s", "0.05", "--timeout-s", "1.0", *extra]
    result = CliRunner().invoke(app, args, env={"TEST_TEACHER_KEY": SECRET, **(env or {})})
    return result, (json.loads(result.stdout) if result.stdout.strip() else None)


def flat(text: str) -> str:
    """Rich wraps error panels to the terminal width; join the lines back for matching."""
    return " ".join(text.replace("│", " ").split())


def billed_cost(server) -> float:
    return (server.prompt_tokens * PRICE["input_per_mtok"] + server.completion_tokens * PRICE["output_per_mtok"]) / 1e6


def test_flaky_server_300_prompts_each_billed_once_cost_exact_and_no_secret_anywhere(lab):
    ref = make_prompts(lab, 300)
    with FakeTeacherServer(fail_rate=0.3, seed=7, stall_s=1.6) as server:
        result, out = materialize(lab, server, ref, "--concurrency", "16", "--max-attempts", "12", "--breaker", "40")
        assert result.exit_code == 0, result.output
        requests, billed = server.snapshot()

    faults = [s for events in server.events.values() for _, s in events if s != 200]
    assert len(faults) > 60 and {500, 429, 504} <= set(faults)  # the server really was flaky
    assert len(billed) == 300 and set(billed.values()) == {1}  # every prompt paid for exactly once
    failed_calls = [json.loads(line) for line in (lab.logs_dir / f"{out['run_id']}.jsonl").read_text().splitlines()
                    if '"call_failed"' in line]
    assert out["calls"] == 300 + len(failed_calls) == 300 + out["retries"]  # one success per prompt, the rest failures
    assert sum(requests.values()) <= out["calls"]  # a call that timed out before the server read it is still a call
    assert out["cache_hits"] == 0 and out["failed"] == 0
    assert math.isclose(out["cost_usd"], billed_cost(server), rel_tol=1e-9)

    rows = read_dataset_rows(lab, out["dataset"])
    source = read_dataset_rows(lab, ref)
    assert [r["prompt"] for r in rows] == [r["prompt"] for r in source]  # each prompt once, in input order
    assert all(r["answer"] == teacher_answer(r["prompt"]) for r in rows)
    assert [r["reference"] for r in rows] == [r["answer"] for r in source]
    assert math.isclose(sum(r["cost_usd"] for r in rows), out["cost_usd"], rel_tol=1e-9)
    assert all(r["latency_ms"] > 0 and r["input_tokens"] == len(r["prompt"]) + 3 for r in rows)

    manifest = load_run(lab, out["run_id"])
    assert manifest.status == "succeeded" and manifest.run_type == "distill"
    assert math.isclose(manifest.cost_estimate_usd_total, billed_cost(server), rel_tol=1e-9)
    assert math.isclose(manifest.cost.api_usd, billed_cost(server), rel_tol=1e-9)
    assert manifest.teacher_model.endswith(f"#{MODEL}") and manifest.dataset_id == out["dataset"]
    assert [i.ref for i in manifest.inputs] == [ref]
    kinds = {o.kind for o in manifest.outputs}
    assert {"dataset", "distill_report"} <= kinds
    report = json.loads(lab.durable().get_bytes(f"distill/{out['run_id']}/report.json"))
    assert report["cache_misses"] == 300 and report["cache_hits"] == 0 and report["calls"] == out["calls"]
    assert manifest.metrics["cache_misses"] == 300 and manifest.metrics["cache_hits"] == 0
    assert manifest.metrics["calls"] == out["calls"]

    dataset = read_dataset_manifest(lab, out["dataset"])
    assert dataset.parents == [ref] and MODEL in dataset.notes and dataset.row_schema == "paired"

    # Retry-After is honoured: after every 429 the same prompt waits at least the advertised second.
    for events in server.events.values():
        events = sorted(events)
        for (t0, status), (t1, _) in zip(events, events[1:]):
            if status == 429:
                assert t1 - t0 >= 0.95

    # The key never reaches a file the run wrote, nor the command's output.
    assert SECRET not in result.output
    written = [p for p in lab.root.rglob("*") if p.is_file()]
    assert len(written) > 300  # cache entries, manifests, logs, dataset
    assert not [p for p in written if SECRET.encode() in p.read_bytes()]


def test_rerun_makes_zero_calls_and_returns_the_same_version(lab):
    ref = make_prompts(lab, 40)
    with FakeTeacherServer() as server:
        first_result, first = materialize(lab, server, ref)
        assert first_result.exit_code == 0, first_result.output
        before = sum(server.requests.values())
        second_result, second = materialize(lab, server, ref)
        assert second_result.exit_code == 0, second_result.output
        assert sum(server.requests.values()) == before == 40
    assert second["calls"] == 0 and second["cache_hits"] == 40 and second["cost_usd"] == 0
    assert second["dataset"] == first["dataset"]  # same rows, same version: idempotent
    assert load_run(lab, second["run_id"]).cost_estimate_usd_total == 0


def test_budget_stops_before_it_is_exceeded_keeps_what_was_done_and_a_rerun_finishes(lab):
    ref = make_prompts(lab, 30)
    # Each prompt is ~27 bytes: worst case (27+16 in, 32 out) ≈ $0.000353; a $0.003 budget fits ~8 of them.
    with FakeTeacherServer() as server:
        result, out = materialize(lab, server, ref, "--budget-usd", "0.003", "--max-tokens", "32", "--concurrency", "2")
        assert result.exit_code == 0, result.output
        assert out["stopped"] == "budget" and 0 < out["failed"] < 30
        assert out["cost_usd"] <= 0.003 and math.isclose(out["cost_usd"], billed_cost(server), rel_tol=1e-9)
        answered = len(read_dataset_rows(lab, out["dataset"]))
        assert answered == 30 - out["failed"] == server.total_billed
        quarantined = lab.durable().get_bytes(f"datasets/paired/quarantine/{out['run_id']}.jsonl").decode().splitlines()
        assert len(quarantined) == out["failed"] and "budget" in json.loads(quarantined[0])["reason"]

        rest_result, rest = materialize(lab, server, ref, "--max-tokens", "32")
        assert rest_result.exit_code == 0, rest_result.output
    assert rest["cache_hits"] == answered and rest["calls"] == 30 - answered and rest["failed"] == 0
    assert set(server.billed.values()) == {1} and len(server.billed) == 30


def test_circuit_breaker_stops_a_dead_teacher_with_a_clear_error(lab):
    ref = make_prompts(lab, 50)
    with FakeTeacherServer(fail_rate=1.0, seed=1, stall_s=1.2) as server:
        result, out = materialize(lab, server, ref, "--breaker", "5", "--concurrency", "2")
        sent = sum(server.requests.values())
    assert result.exit_code == 1
    assert out["status"] == "failed" and re.search(r"\d consecutive calls failed \(threshold 5\)", out["error"])
    assert "rerun" in out["error"]
    assert out["dataset"] is None and out["calls"] == sent and sent <= 5 + 2  # stopped early, not 50 x retries
    assert load_run(lab, out["run_id"]).status == "failed"


def test_bad_key_fails_fast_without_leaking_and_echoed_headers_are_scrubbed(lab):
    ref = make_prompts(lab, 30)
    with FakeTeacherServer(key="the-right-key") as server:
        result, out = materialize(lab, server, ref, "--concurrency", "2")
    assert result.exit_code == 1 and "refused the credentials (401)" in out["error"]
    assert out["calls"] == server.unauthorized <= 2 and SECRET not in result.output  # one refusal stops everyone

    from nexa.ledger.datasets import write_dataset_version

    echo = write_dataset_version(lab, "echo", [{"prompt": "ECHO-HEADERS"}, {"prompt": "fine"}], row_schema="qa").ref
    with FakeTeacherServer() as server:
        result, out = materialize(lab, server, echo, out="echoed")
    assert result.exit_code == 0, result.output
    assert out["failed"] == 1 and out["answered"] == 1
    quarantine = lab.durable().get_bytes(f"datasets/echoed/quarantine/{out['run_id']}.jsonl").decode()
    assert "bad request" in quarantine and "***" in quarantine and SECRET not in quarantine
    assert not [p for p in lab.root.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]


def test_user_errors_exit_2_with_a_message(lab):
    ref = make_prompts(lab, 3)
    with FakeTeacherServer() as server:
        no_model = CliRunner().invoke(app, ["distill", "materialize", "--lab", str(lab.root), "--dataset", ref,
                                            "--teacher", server.url, "--out", "x"])
        unpriced, _ = materialize(lab, server, ref, "--teacher-model", "mystery-model")
        unset_key = CliRunner().invoke(app, ["distill", "materialize", "--lab", str(lab.root), "--dataset", ref,
                                             "--teacher", server.url, "--teacher-model", MODEL, "--out", "x",
                                             "--api-key-env", "NOT_SET_ANYWHERE"])
        missing, out = materialize(lab, server, "no-such-dataset")
    assert no_model.exit_code == 2 and "needs --teacher-model NAME" in flat(no_model.output)
    assert unpriced.exit_code == 2 and "no price for model 'mystery-model'" in flat(unpriced.output)
    assert unset_key.exit_code == 2 and "NOT_SET_ANYWHERE is not set" in flat(unset_key.output)
    assert missing.exit_code == 2 and "no dataset 'no-such-dataset'" in out["error"]


def test_duplicate_prompts_are_asked_once_and_bad_rows_are_quarantined_not_dropped(lab):
    from nexa.ledger.datasets import write_dataset_version

    rows = [{"prompt": "same"}, {"prompt": ""}, {"prompt": "same"}, {"prompt": None}, {"prompt": "other"}]
    ref = write_dataset_version(lab, "messy", rows, row_schema="qa").ref
    with FakeTeacherServer() as server:
        result, out = materialize(lab, server, ref, out="messy-paired")
        assert result.exit_code == 0, result.output
        assert dict(server.requests) == {"same": 1, "other": 1}
    assert out["answered"] == 3 and out["failed"] == 2 and out["calls"] == 2
    assert [r["prompt"] for r in read_dataset_rows(lab, out["dataset"])] == ["same", "same", "other"]
    quarantined = [json.loads(line) for line in
                   lab.durable().get_bytes(f"datasets/messy-paired/quarantine/{out['run_id']}.jsonl").decode().splitlines()]
    assert [(q["row"], q["field"]) for q in quarantined] == [(1, "prompt"), (3, "prompt")]
    assert "expected a non-empty string" in quarantined[0]["reason"] and "messy@v1" == quarantined[0]["dataset"]


def test_an_input_that_already_has_teacher_columns_is_refused_by_name(lab):
    from nexa.ledger.datasets import write_dataset_version

    ref = write_dataset_version(lab, "clash", [{"prompt": "p", "cost_usd": 1.0}], row_schema="qa").ref
    with FakeTeacherServer() as server:
        result, out = materialize(lab, server, ref, out="clash-paired")
        assert sum(server.requests.values()) == 0
    assert result.exit_code == 2 and "already has column(s) ['cost_usd']" in out["error"]
    assert load_run(lab, out["run_id"]).status == "failed"

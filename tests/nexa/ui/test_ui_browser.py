"""The dashboard driven in Debian's headless Chromium: rows equal the Parquet, filters, plots, review decisions."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from nexa.feedback import review as rv
from nexa.feedback.merge import next_version
from nexa.ledger.datasets import read_dataset_rows
from nexa.ui.app import running

from ui_lab import build_lab


def _parquet_rows(ui_lab) -> list[dict]:
    return [r for path in ui_lab["parquets"] for r in pq.read_table(path).to_pylist()]


def _table_rows(page) -> list[dict]:
    return page.eval_on_selector_all(
        "#leaderboard tbody tr",
        "rows => rows.map(r => { const c = Array.from(r.cells).map(td => td.innerText);"
        " return {model: c[0], role: c[1], capability: c[2], score: parseFloat(c[4]), run: c[9]}; })")


def _shot(page, screenshots: Path, name: str) -> None:
    path = screenshots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_leaderboard_rows_equal_the_parquet(served, page, ui_lab, screenshots):
    page.goto(served + "/")
    shown = _table_rows(page)
    expected = _parquet_rows(ui_lab)
    assert len(shown) == len(expected) == 8
    key = lambda r: (r["model"], r["capability"], round(r["score"], 4))  # noqa: E731
    assert sorted(map(key, shown)) == sorted(map(key, expected))
    assert {r["run"] for r in shown} == {ui_lab["eval"], ui_lab["later"]}
    assert page.locator(".plotly-graph-div").count() >= 3
    _shot(page, screenshots, "leaderboard")


def test_filters_and_sorting_change_the_rows(served, page, ui_lab):
    page.goto(served + "/")
    page.select_option("#filter-capability", "science")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**capability=science**")
    science = _table_rows(page)
    assert len(science) == sum(r["capability"] == "science" for r in _parquet_rows(ui_lab)) == 4
    assert {r["capability"] for r in science} == {"science"}
    page.select_option("#filter-role", "student")
    page.select_option("#filter-run", ui_lab["later"])
    page.click("#filters button[type=submit]")
    assert [(r["model"], r["score"]) for r in _table_rows(page)] == [("student_niwt", 0.96)]
    page.goto(served + "/?sort=score&desc=1")
    scores = [r["score"] for r in _table_rows(page)]
    assert scores == sorted(scores, reverse=True) and len(scores) == 8


def test_plots_have_one_point_per_model_and_run(served, page, ui_lab):
    page.goto(served + "/")
    page.wait_for_function("document.querySelector('#plot-cost-quality .main-svg') !== null")
    points = page.evaluate("document.getElementById('plot-cost-quality').data.reduce((n, t) => n + t.x.length, 0)")
    pairs = {(r["model"], r["run_id"]) for r in _board_with_runs(ui_lab)}
    assert points == len(pairs) == 4  # three models in the pipeline's eval, the student again in the later run
    xs = page.evaluate("document.getElementById('plot-cost-quality').data.flatMap(t => t.x)")
    assert sorted(xs) == pytest.approx(sorted([0.004, 0.004, 0.004, 0.008]))  # $ summed over capabilities, not latency
    lines = page.evaluate("document.getElementById('plot-scores-over-time').data.map(t => t.x.length)")
    assert max(lines) == 2  # the student's scores at both runs
    rendered = page.locator("#plot-cost-quality .scatterlayer .point").count()
    assert rendered == 4


def _board_with_runs(ui_lab) -> list[dict]:
    runs = [ui_lab["eval"], ui_lab["later"]]
    return [{**r, "run_id": run} for path, run in zip(ui_lab["parquets"], runs) for r in pq.read_table(path).to_pylist()]


def test_run_page_links_to_datasets_and_parent_runs(served, page, ui_lab, screenshots):
    page.goto(f"{served}/runs/{ui_lab['pipeline']}")
    assert page.locator("#stages tbody tr").count() == 3
    assert "retention_ci" in page.locator("#verify").inner_text()
    assert "[0.950, 1.000]" in page.locator("#verify").inner_text()
    _shot(page, screenshots, "run")
    page.click(f"#children a:text('{ui_lab['eval']}')")
    page.click(f"#lineage a:text('{ui_lab['dataset']}')")
    assert page.locator("h1").inner_text() == f"Dataset {ui_lab['dataset']}"
    page.click("#dataset a")  # created_by: the run that wrote it
    assert "data" in page.locator("#manifest").inner_text()


def test_review_decisions_land_in_the_ledger_and_feed_the_next_version(served, page, ui_lab, screenshots):
    lab = ui_lab["lab"]
    page.goto(served + "/review")
    page.select_option("#sample-form select", ui_lab["eval"])
    page.fill("#sample-form input[name=n]", "4")
    page.click("#sample-form button")
    assert "4 items to review" in page.locator(".msg.ok").inner_text()
    queue = next(q for q in rv.list_queues(lab) if q.source_run == ui_lab["eval"] and len(q.items) == 4)
    first, second = queue.items[0], queue.items[1]
    page.locator(f"#item-{first.item_id} button[value=exclude]").click()
    assert "recorded in the ledger" in page.locator(".msg.ok").inner_text()
    page.locator(f"#item-{second.item_id} textarea").fill("99")
    page.locator(f"#item-{second.item_id} button[value=edit]").click()
    _shot(page, screenshots, "review")
    stored = {i.item_id: i for i in rv.load_queue(lab, queue.queue_id).items}
    assert stored[first.item_id].decision == "exclude" and stored[first.item_id].revision == 1
    assert stored[second.item_id].decision == "accept" and stored[second.item_id].edited_output == "99"
    merged = next_version(lab, ui_lab["dataset"], [], rv.decisions(lab))
    rows = {r["prompt"]: r for r in read_dataset_rows(lab, merged.manifest.ref)}
    assert first.prompt not in rows
    assert rows[second.prompt]["answer"] == "99"


def test_a_stale_decision_is_refused_with_a_message(served, browser, ui_lab):
    queue = rv.sample_queue(lab := ui_lab["lab"], ui_lab["eval"], n=3, seed=7)
    item = queue.items[2]
    one, two = browser.new_page(), browser.new_page()
    for p in (one, two):
        p.goto(served + "/review")
    one.locator(f"#item-{item.item_id} button[value=accept]").click()
    two.locator(f"#item-{item.item_id} button[value=exclude]").click()
    assert "changed by" in two.locator(".msg.error").inner_text()
    stored = next(i for i in rv.load_queue(lab, queue.queue_id).items if i.item_id == item.item_id)
    assert (stored.decision, stored.revision) == ("accept", 1)
    one.close(), two.close()


def test_simultaneous_decisions_on_one_row_are_neither_lost_nor_doubled(served, ui_lab):
    queue = rv.sample_queue(lab := ui_lab["lab"], ui_lab["eval"], n=2, seed=3)
    item = queue.items[0]
    url = f"{served}/review/{queue.queue_id}/{item.item_id}"
    barrier, statuses = threading.Barrier(4), []

    def post(decision: str) -> None:
        barrier.wait()
        statuses.append(httpx.post(url, data={"decision": decision, "revision": "0"}, timeout=30).status_code)

    threads = [threading.Thread(target=post, args=(d,)) for d in ("accept", "exclude", "accept", "exclude")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200, 409, 409, 409]
    stored = next(i for i in rv.load_queue(lab, queue.queue_id).items if i.item_id == item.item_id)
    assert stored.revision == 1


def test_empty_lab_and_missing_artifacts_show_a_message(tmp_path, browser, screenshots):
    from nexa.ledger import Lab

    empty = Lab.init(tmp_path / "empty")
    page = browser.new_page()
    with running(empty.root) as url:
        for path, text in (("/", "No leaderboard"), ("/runs", "no runs yet"), ("/verify", "No verify report"),
                           ("/review", "No review queue"), ("/runs/2026-01-01_000000-abcdef", "no run")):
            response = page.goto(url + path)
            assert text in page.locator(".msg").first.inner_text(), path
            assert "Traceback" not in page.content()
            assert response.status in (200, 404)
        _shot(page, screenshots, "empty")
    broken = build_lab(tmp_path / "broken")
    import shutil

    shutil.rmtree(broken["eval_dir"])
    with running(broken["lab"].root) as url:
        response = page.goto(f"{url}/runs/{broken['eval']}")
        assert response.status == 200
        assert "does not exist" in page.locator(".msg.error").first.inner_text()
        page.goto(url + "/")
        assert page.locator("#leaderboard tbody tr").count() == 2  # only the later run's rows are left
    page.close()

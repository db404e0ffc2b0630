"""``nexa report``: one self-contained HTML file (works offline) or a PDF; the pipeline's report stage uses the same code."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

from typer.testing import CliRunner

from nexa.cli import app
from nexa.ledger.runs import load_run


def _report(ui_lab, run_id: str, fmt: str, out: Path):
    """``nexa report`` in this process (the CLI's start-up is not under test; its exit code and streams are)."""
    result = CliRunner().invoke(app, ["report", "--run", run_id, "--format", fmt, "--out", str(out),
                                      "--lab", str(ui_lab["lab"].root), "--json"])
    result.returncode = result.exit_code
    return result


def test_html_report_is_self_contained_and_draws_offline(ui_lab, tmp_path, screenshots):
    from nexa.ui.browser import chromium

    out = tmp_path / "report.html"
    proc = _report(ui_lab, ui_lab["pipeline"], "html", out)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["outputs"][0]["path"] == str(out)
    text = out.read_text()
    assert not re.search(r"<script[^>]+src=", text) and "<link" not in text  # plotly.js is inlined, nothing fetched
    with chromium() as browser:  # its own browser: PDF export below drives Playwright's sync API again
        page = browser.new_page()
        page.route("**/*", lambda route: route.abort() if not route.request.url.startswith("file:") else route.continue_())
        page.goto(out.as_uri())
        page.wait_for_function("document.querySelectorAll('.plotly-graph-div .main-svg').length >= 5")
        ids = page.eval_on_selector_all(".plotly-graph-div", "divs => divs.map(d => d.id)")
        assert {"plot-cost-quality", "plot-capability-scores", "plot-scores-over-time", "plot-retention", "plot-feedback"} <= set(ids)
        assert page.locator("#leaderboard tbody tr").count() == 6  # the pipeline's own eval, not the later run
        assert page.locator("#stages tbody tr").count() == 3
        page.screenshot(path=str(screenshots / "report.png"), full_page=True)


def test_pdf_report_is_printed_by_chromium(ui_lab, tmp_path):
    out = tmp_path / "deep" / "report.pdf"
    proc = _report(ui_lab, ui_lab["pipeline"], "pdf", out)
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert data.startswith(b"%PDF-") and len(data) > 20_000
    assert b"/Type /Page" in data or b"/Type/Page" in data


def test_bad_requests_are_one_line_errors(ui_lab, tmp_path):
    missing = _report(ui_lab, "2026-01-01_000000-abcdef", "html", tmp_path / "x.html")
    assert missing.returncode == 2 and "error: no run" in missing.stderr and "Traceback" not in missing.stderr
    wrong = _report(ui_lab, ui_lab["pipeline"], "docx", tmp_path / "x.docx")
    assert wrong.returncode == 2 and "--format must be one of" in wrong.stderr
    assert not (tmp_path / "x.html").exists() and not (tmp_path / "x.docx").exists()


def test_pipeline_report_stage_uses_the_same_report(ui_lab, tmp_path):
    from nexa.ui.stages import report

    lab = ui_lab["lab"]
    pipeline = load_run(lab, ui_lab["pipeline"])
    folders = {ref.ref.split(":")[0]: Path(ref.path) for ref in pipeline.outputs}
    ctx = SimpleNamespace(lab=lab, out=tmp_path, run=SimpleNamespace(manifest=SimpleNamespace(parent_run_id=pipeline.run_id)),
                          input=lambda name: folders[name])
    summary = report(ctx, feedback="feedback")
    text = (tmp_path / "report.html").read_text()
    assert summary == {"report": "report.html", "bytes": len(text.encode())}
    assert text.count('class="plotly-graph-div"') == 5 and "retention_ci" in text and "PASSED" in text

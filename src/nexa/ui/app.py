"""``nexa ui``: the dashboard, a FastAPI app over one lab's ledger, re-read on every request.

Pages: the leaderboard with filters and plots (``/``), runs and one run (``/runs/ID``), datasets
(``/datasets/ID@vN``), verify reports (``/verify``), feedback rounds (``/feedback``) and the human review
queue (``/review``), whose decisions go through :func:`nexa.feedback.review.decide`, the same function
``nexa feedback review decide`` calls. plotly.js is served from the installed ``plotly`` package.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, Response

from nexa.ledger import LedgerError
from nexa.ui import labview, pages
from nexa.ui.labview import Missing

SCRIPTS = '<script src="/static/plotly.js"></script>'


def create_app(lab_root: str | Path) -> FastAPI:
    """The dashboard of the lab at ``lab_root`` (which must hold ``nexa.yaml``)."""
    root = Path(lab_root)
    app = FastAPI(title="NexaCompute lab", docs_url=None, redoc_url=None, openapi_url=None)

    def html(title: str, body: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(pages.page(title, body, SCRIPTS), status_code=status)

    def view() -> labview.LabView:
        return labview.open_lab(root)

    def problems(found: labview.LabView) -> str:
        return "".join(pages.message(f"{p.what}: {p.reason}", "error") for p in found.problems)

    @app.exception_handler(LedgerError)
    @app.exception_handler(FileNotFoundError)
    @app.exception_handler(KeyError)
    async def not_found(request: Request, exc: Exception) -> HTMLResponse:
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        return html("Not found", pages.message(str(text), "error"), 404)

    @app.get("/static/plotly.js")
    def plotly() -> Response:
        from nexa.ui.plots import plotly_js

        return Response(plotly_js(), media_type="application/javascript",
                        headers={"Cache-Control": "max-age=86400"})

    @app.get("/", response_class=HTMLResponse)
    def leaderboard(request: Request) -> HTMLResponse:
        found = view()
        query = {k: v for k, v in request.query_params.items() if k in ("capability", "role", "run", "sort", "desc") and v}
        rows = labview.leaderboard_rows(found)
        shown = labview.filter_rows(rows, query.get("capability", ""), query.get("role", ""), query.get("run", ""))
        if query.get("sort") in pages.LEADERBOARD_COLUMNS:
            shown = labview.sort_rows(shown, query["sort"], query.get("desc") == "1")
        return html(f"{found.lab.config.name}: leaderboard", problems(found) + pages.leaderboard(shown, rows, query))

    @app.get("/runs", response_class=HTMLResponse)
    def runs() -> HTMLResponse:
        found = view()
        return html("Runs", problems(found) + pages.runs_table(found))

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run(run_id: str) -> HTMLResponse:
        found = view()
        manifest = found.by_id.get(run_id)
        if manifest is None:
            known = [r.run_id for r in found.runs][-5:]
            return html("Run not found", pages.message(f"no run {run_id!r} in this lab; latest runs: {known or 'none'}", "error"), 404)
        body = pages.run_page(found, manifest, labview.stage_rows(found, manifest), _lineage(found, run_id),
                              labview.missing_outputs(manifest))
        verify = labview.verify_reports(found, manifest)
        feedback = labview.feedback_rounds(found, manifest)
        body += "".join("<h2>Verify report</h2>" + pages.verify_section(a, r) for a, r in verify)
        body += "".join("<h2>Feedback round</h2>" + pages.feedback_section(a, r) for a, r in feedback)
        return html(f"Run {run_id}", body)

    @app.get("/datasets/{ref}", response_class=HTMLResponse)
    def dataset(ref: str) -> HTMLResponse:
        from nexa.ledger.datasets import read_dataset_manifest, read_dataset_rows

        found = view()
        manifest = read_dataset_manifest(found.lab, ref)
        return html(f"Dataset {manifest.ref}", pages.dataset_page(manifest, read_dataset_rows(found.lab, manifest.ref)[:10]))

    @app.get("/verify", response_class=HTMLResponse)
    def verify() -> HTMLResponse:
        return html("Teacher-free verification", _newest_first(labview.verify_reports(view()), pages.verify_section,
                    "No verify report in this lab yet: `nexa bundle verify` (or the golden pipeline) writes one."))

    @app.get("/feedback", response_class=HTMLResponse)
    def feedback() -> HTMLResponse:
        return html("Feedback rounds: before / after", _newest_first(labview.feedback_rounds(view()), pages.feedback_section,
                    "No feedback round with before/after scores in this lab yet."))

    @app.get("/review", response_class=HTMLResponse)
    def review() -> HTMLResponse:
        return _review_page(view(), "")

    @app.post("/review/sample", response_class=HTMLResponse)
    def sample(run_id: str = Form(...), n: int = Form(10)) -> HTMLResponse:
        from nexa.feedback import review as rv

        found = view()
        try:
            queue = rv.sample_queue(found.lab, run_id, n)
        except (FileNotFoundError, ValueError) as exc:
            return _review_page(found, pages.message(str(exc), "error"), 400)
        return _review_page(found, pages.message(f"queue {queue.queue_id}: {len(queue.items)} items to review", "ok"))

    @app.post("/review/{queue_id}/{item_id}", response_class=HTMLResponse)
    def decide(queue_id: str, item_id: str, decision: str = Form(...), revision: int = Form(...),
               reviewer: str = Form(""), edited_output: str = Form("")) -> HTMLResponse:
        from nexa.feedback import review as rv

        found = view()
        if decision not in ("accept", "exclude", "edit"):
            return _review_page(found, pages.message(f"decision must be accept, exclude or edit, not {decision!r}", "error"), 400)
        try:
            item = rv.decide(found.lab, queue_id, item_id, "accept" if decision == "edit" else decision, reviewer or None,
                             edited_output=edited_output if decision == "edit" else None, expected_revision=revision)
        except rv.ReviewConflictError as exc:
            return _review_page(found, pages.message(str(exc), "error"), 409)
        done = f"item {item.item_id}: {item.decision}" + (" with your edit" if item.edited_output is not None else "")
        return _review_page(found, pages.message(done + " (recorded in the ledger)", "ok"))

    def _review_page(found: labview.LabView, note: str, status: int = 200) -> HTMLResponse:
        from nexa.feedback import review as rv

        sources = [r.run_id for r in reversed(found.runs) if r.run_type in ("eval", "feedback") and r.status == "succeeded"]
        return html("Human review queue", note + pages.review_page(rv.list_queues(found.lab), sources), status)

    return app


def _newest_first(found: list, render, empty: str) -> str:
    """Each (artifact, content) rendered, newest first, or a note saying there is none yet."""
    return "".join(render(a, r) for a, r in reversed(found)) or pages.message(empty, "info")


def _lineage(found: labview.LabView, run_id: str) -> dict | Missing:
    """The run's lineage tree, or why it cannot be traced (an input artifact deleted, a corrupt record)."""
    from nexa.ledger.lineage import trace

    try:
        return trace(found.lab, run_id)
    except (LedgerError, FileNotFoundError, KeyError, ValueError) as exc:
        return Missing("lineage", f"{type(exc).__name__}: {exc}")


def serve(lab_root: str | Path, host: str, port: int) -> None:
    """Run the dashboard until interrupted."""
    import uvicorn

    uvicorn.run(create_app(lab_root), host=host, port=port, log_level="warning")


@contextmanager
def running(lab_root: str | Path, timeout_s: float = 30.0) -> Iterator[str]:
    """The dashboard served from a background thread on a free local port; yields its base URL.

    For the browser tests and the screenshot script, which drive the real HTTP server.
    """
    from nexa.serve.background import on_loopback

    with on_loopback(create_app(lab_root), "the dashboard", timeout_s) as url:
        yield url

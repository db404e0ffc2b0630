"""Screenshots of every dashboard page of a real lab, for docs/ui/ (run after `nexa demo --lab LAB`).

    python docs/ui/screenshots.py --lab nexa-demo --out docs/ui

Serves the lab with ``nexa.ui.app.running``, samples a review queue from the lab's eval stage when it
has none, records one decision, and saves each page as a palette PNG (small enough for git).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from PIL import Image

from nexa.feedback import review as rv
from nexa.ui import labview
from nexa.ui.app import running
from nexa.ui.browser import chromium


def _pipeline(view: labview.LabView):
    """The pipeline run that did the most work (a rerun that only reused cached stages shows less)."""
    pipelines = [r for r in view.runs if r.run_type == "pipeline"]
    return max(pipelines, key=lambda r: (sum(s.status == "ran" for s in r.stages), r.started_at), default=None)


def _eval_run(view: labview.LabView) -> str | None:
    pipeline = _pipeline(view)
    artifacts = view.artifacts(pipeline) if pipeline else []
    return next((a.run_id for a in artifacts if a.name == "eval"), None)


def _pages(view: labview.LabView) -> dict[str, str]:
    """Every page kind the lab can fill: the front page, runs, the latest pipeline run, a dataset, verify, feedback, review."""
    pages = {"leaderboard": "/", "runs": "/runs", "verify": "/verify", "feedback": "/feedback", "review": "/review"}
    if (pipeline := _pipeline(view)) is not None:
        pages["run"] = f"/runs/{pipeline.run_id}"
    datasets = [i.ref for r in view.runs for i in r.inputs + r.outputs if i.kind == "dataset"]
    if datasets:
        pages["dataset"] = f"/datasets/{datasets[-1]}"
    return pages


def _review_queue(view: labview.LabView) -> None:
    """A queue with one approved and one rejected row, sampled from the eval stage (when the lab has one)."""
    eval_run = _eval_run(view)
    if rv.list_queues(view.lab) or eval_run is None:
        return
    queue = rv.sample_queue(view.lab, eval_run, n=6)
    rv.decide(view.lab, queue.queue_id, queue.items[0].item_id, "accept", "screenshot")
    rv.decide(view.lab, queue.queue_id, queue.items[1].item_id, "exclude", "screenshot", note="wrong answer")


def _save(png: bytes, path: Path, max_height: int) -> None:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.height > max_height:
        image = image.crop((0, 0, image.width, max_height))
    image.quantize(colors=64).save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    parser.add_argument("--max-height", type=int, default=2400)
    parser.add_argument("--prefix", default="", help="Prefix of the PNG names (to keep two labs apart).")
    args = parser.parse_args()
    view = labview.open_lab(args.lab)
    _review_queue(view)
    args.out.mkdir(parents=True, exist_ok=True)
    with running(args.lab) as url, chromium() as browser:
        page = browser.new_page()
        for name, path in _pages(view).items():
            page.goto(url + path)
            page.wait_for_load_state("load")
            page.wait_for_function("Array.from(document.querySelectorAll('.plotly-graph-div'))"
                                   ".every(d => d.querySelector('.main-svg'))")
            _save(page.screenshot(full_page=True), args.out / f"{args.prefix}{name}.png", args.max_height)
            print(f"{args.prefix}{name}.png  {url + path}")


if __name__ == "__main__":
    main()

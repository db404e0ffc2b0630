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


def _pages(view: labview.LabView) -> dict[str, str]:
    pipeline = next(r for r in reversed(view.runs) if r.run_type == "pipeline")
    eval_run = next(a.run_id for a in view.artifacts(pipeline) if a.name == "eval")
    datasets = [i.ref for r in view.runs for i in r.inputs + r.outputs if i.kind == "dataset"]
    pages = {"leaderboard": "/", "runs": "/runs", "run": f"/runs/{pipeline.run_id}", "eval_run": f"/runs/{eval_run}",
             "verify": "/verify", "feedback": "/feedback", "review": "/review"}
    if datasets:
        pages["dataset"] = f"/datasets/{datasets[-1]}"
    return pages


def _review_queue(view: labview.LabView) -> None:
    if rv.list_queues(view.lab):
        return
    pipeline = next(r for r in reversed(view.runs) if r.run_type == "pipeline")
    eval_run = next(a.run_id for a in view.artifacts(pipeline) if a.name == "eval")
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
    args = parser.parse_args()
    view = labview.open_lab(args.lab)
    _review_queue(view)
    args.out.mkdir(parents=True, exist_ok=True)
    with running(args.lab) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        for name, path in _pages(view).items():
            page.goto(url + path)
            page.wait_for_load_state("load")
            page.wait_for_function("Array.from(document.querySelectorAll('.plotly-graph-div'))"
                                   ".every(d => d.querySelector('.main-svg'))")
            _save(page.screenshot(full_page=True), args.out / f"{name}.png", args.max_height)
            print(f"{name}.png  {url + path}")


if __name__ == "__main__":
    main()

"""Human review queue: sample a run's outputs, record accept/exclude decisions in the ledger.

A queue is a small JSON file, written atomically to ``<lab>/registry/review/<queue_id>.json`` (the
ledger, meant for git) and with a hash sidecar to durable storage. Decisions are honoured by the
next dataset version :func:`nexa.feedback.merge.next_version` builds: an excluded prompt is removed
from the training rows, an accepted output becomes a training row (never for a held-out eval prompt).
"""

from __future__ import annotations

import json
import random
from datetime import datetime
from pathlib import Path
from typing import Literal

from filelock import FileLock
from pydantic import BaseModel, ConfigDict, Field

from nexa.ledger import Lab
from nexa.ledger.hashing import sha256_json
from nexa.ledger.manifests import dump_manifest, load_manifest, utcnow
from nexa.ledger.runs import load_run
from nexa.ledger.store import atomic_write_bytes

REVIEW_SCHEMA_VERSION = 1
Decision = Literal["pending", "accept", "exclude"]
SAMPLE_FILES = ("generations.jsonl", "candidates.jsonl")


class ReviewItem(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    item_id: str
    prompt: str
    output: str = Field(description="The answer under review (a model output or a generated row's answer).")
    capability: str
    domain: str = ""
    reference: str | None = None
    decision: Decision = "pending"
    reviewer: str | None = None
    note: str = ""
    decided_at: datetime | None = None
    edited_output: str | None = Field(None, description="A reviewer's corrected answer; accepted in place of ``output``.")
    revision: int = Field(0, description="Bumped by every decision, so a stale decision is refused, not applied twice.")


class ReviewQueue(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    schema_version: int = REVIEW_SCHEMA_VERSION
    queue_id: str
    source_run: str
    source_file: str
    created_at: datetime = Field(default_factory=utcnow)
    items: list[ReviewItem]

    def counts(self) -> dict[str, int]:
        """How many items are pending, accepted and excluded."""
        return {d: sum(i.decision == d for i in self.items) for d in ("pending", "accept", "exclude")}


def queue_path(lab: Lab, queue_id: str) -> Path:
    """Where a queue lives: the lab registry's review/ folder."""
    return lab.registry_dir / "review" / f"{queue_id}.json"


def save_queue(lab: Lab, queue: ReviewQueue) -> Path:
    """Durable copy first (hashed), then the ledger copy, like run manifests."""
    data = dump_manifest(queue)
    lab.durable().put_bytes(f"review/{queue.queue_id}.json", data, overwrite=True)
    path = queue_path(lab, queue.queue_id)
    atomic_write_bytes(path, data)
    return path


def load_queue(lab: Lab, queue_id: str) -> ReviewQueue:
    path = queue_path(lab, queue_id)
    if not path.exists():
        known = sorted(p.stem for p in path.parent.glob("*.json")) if path.parent.exists() else []
        raise FileNotFoundError(f"no review queue {queue_id!r} in {path.parent}; queues: {known or 'none'}")
    return load_manifest(ReviewQueue, path.read_bytes(), str(path))


def list_queues(lab: Lab) -> list[ReviewQueue]:
    folder = lab.registry_dir / "review"
    return [load_manifest(ReviewQueue, p.read_bytes(), str(p)) for p in sorted(folder.glob("*.json"))] if folder.exists() else []


def run_samples(lab: Lab, run_id: str) -> tuple[Path, list[dict]]:
    """The output rows of a run: its ``generations.jsonl`` (eval) or ``candidates.jsonl`` (feedback)."""
    manifest = load_run(lab, run_id)
    for ref in manifest.outputs:
        for candidate in [Path(ref.path)] + [Path(ref.path) / name for name in SAMPLE_FILES]:
            if candidate.is_file() and candidate.name in SAMPLE_FILES:
                return candidate, [json.loads(line) for line in candidate.read_text().splitlines() if line.strip()]
    raise FileNotFoundError(f"run {run_id} has no {' or '.join(SAMPLE_FILES)} among its outputs "
                            f"({[o.path for o in manifest.outputs] or 'none'}); sample an eval or feedback run")


def sample_queue(lab: Lab, run_id: str, n: int, seed: int = 42) -> ReviewQueue:
    """Draw ``n`` outputs of a run (seeded, so the same call gives the same queue) into a new queue."""
    if n < 1:
        raise ValueError(f"--n must be at least 1, got {n}")
    source, rows = run_samples(lab, run_id)
    picked = random.Random(seed).sample(rows, min(n, len(rows)))
    items = [_item(row) for row in picked]
    queue_id = f"{run_id}-{sha256_json([i.item_id for i in items])[:8]}"
    queue = ReviewQueue(queue_id=queue_id, source_run=run_id, source_file=str(source), items=items)
    save_queue(lab, queue)
    return queue


def _item(row: dict) -> ReviewItem:
    output = row.get("output", row.get("answer"))
    if "prompt" not in row or output is None:
        raise ValueError(f"sample row {row} has no prompt/output (or prompt/answer) to review")
    return ReviewItem(item_id=sha256_json([row["prompt"], output, row.get("model")])[:16], prompt=row["prompt"],
                      output=output, capability=row.get("capability", ""), domain=row.get("domain", ""),
                      reference=row.get("reference"))


class ReviewConflictError(RuntimeError):
    """The item was decided by someone else since the reviewer loaded it (compare-and-set failed)."""

    def __init__(self, queue_id: str, item: ReviewItem, expected: int):
        self.item = item
        who = item.reviewer or "another reviewer"
        super().__init__(f"item {item.item_id} of queue {queue_id} was changed by {who} while you were looking at it "
                         f"(now {item.decision!r}, revision {item.revision}, you saw revision {expected}); "
                         "nothing was written: reload and decide again")


def decide(lab: Lab, queue_id: str, item_id: str, decision: Decision, reviewer: str | None = None, note: str = "",
           *, edited_output: str | None = None, expected_revision: int | None = None) -> ReviewItem:
    """Record one decision under the queue's file lock; the queue file is rewritten atomically with it.

    ``edited_output`` accepts a corrected answer instead of the model's. ``expected_revision`` is the
    revision the reviewer saw: when the item moved on meanwhile, :class:`ReviewConflictError` is raised and
    nothing is written, so two reviewers deciding the same row at once never lose or double a decision.
    """
    if edited_output is not None and decision != "accept":
        raise ValueError(f"an edited answer can only be accepted, not given decision {decision!r}")
    with FileLock(str(queue_path(lab, queue_id)) + ".lock", timeout=60):
        queue = load_queue(lab, queue_id)
        item = next((i for i in queue.items if i.item_id == item_id), None)
        if item is None:
            raise KeyError(f"queue {queue_id} has no item {item_id!r}; items: {[i.item_id for i in queue.items]}")
        if expected_revision is not None and item.revision != expected_revision:
            raise ReviewConflictError(queue_id, item, expected_revision)
        item.decision, item.reviewer, item.note, item.decided_at = decision, reviewer, note, utcnow()
        item.edited_output, item.revision = edited_output, item.revision + 1
        save_queue(lab, queue)
        return item


def decisions(lab: Lab) -> dict[str, list[ReviewItem]]:
    """Decided items across all queues, by decision; the latest decision on a prompt wins."""
    latest: dict[tuple[str, str], ReviewItem] = {}
    for queue in list_queues(lab):
        for item in queue.items:
            key = (item.prompt, item.output)
            if item.decision != "pending" and (key not in latest or item.decided_at >= latest[key].decided_at):
                latest[key] = item
    out: dict[str, list[ReviewItem]] = {"accept": [], "exclude": []}
    for item in latest.values():
        out[item.decision].append(item)
    return out

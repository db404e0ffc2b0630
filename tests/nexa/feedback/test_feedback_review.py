"""Human review queue: sampling a run's outputs, recording decisions in the ledger, latest decision wins."""

from __future__ import annotations

import json

import pytest

from nexa.feedback import review
from nexa.ledger import ArtifactRef
from nexa.ledger.runs import start_run


@pytest.fixture
def eval_run(lab, tmp_path) -> str:
    """A finished run whose output folder holds generations.jsonl (like an eval run)."""
    folder = tmp_path / "out"
    folder.mkdir()
    rows = [{"model": "s", "prompt": f"max({i},3)=", "output": str(max(i, 3)), "reference": str(max(i, 3)),
             "capability": "reasoning"} for i in range(10)]
    (folder / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with start_run(lab, "eval") as run:
        run.add_output(ArtifactRef(kind="eval_report", ref="eval:x", path=str(folder), sha256="0" * 64))
    return run.run_id


def test_sample_is_seeded_and_recorded_in_the_ledger(lab, eval_run):
    queue = review.sample_queue(lab, eval_run, n=4, seed=1)
    assert len(queue.items) == 4 and all(i.decision == "pending" for i in queue.items)
    assert (lab.registry_dir / "review" / f"{queue.queue_id}.json").exists()
    assert lab.durable().exists(f"review/{queue.queue_id}.json")
    assert review.sample_queue(lab, eval_run, n=4, seed=1).queue_id == queue.queue_id


def test_decisions_are_persisted_and_latest_wins(lab, eval_run):
    queue = review.sample_queue(lab, eval_run, n=3, seed=2)
    first, second = queue.items[0], queue.items[1]
    review.decide(lab, queue.queue_id, first.item_id, "exclude", reviewer="ana", note="wrong")
    review.decide(lab, queue.queue_id, second.item_id, "exclude")
    review.decide(lab, queue.queue_id, second.item_id, "accept")
    reloaded = review.load_queue(lab, queue.queue_id)
    assert reloaded.items[0].reviewer == "ana" and reloaded.items[0].decided_at is not None
    decided = review.decisions(lab)
    assert [i.prompt for i in decided["exclude"]] == [first.prompt]
    assert [i.prompt for i in decided["accept"]] == [second.prompt]


def test_bad_requests_name_what_exists(lab, eval_run):
    queue = review.sample_queue(lab, eval_run, n=2)
    with pytest.raises(KeyError, match="has no item"):
        review.decide(lab, queue.queue_id, "nope", "accept")
    with pytest.raises(FileNotFoundError, match="queues:"):
        review.load_queue(lab, "missing")
    with start_run(lab, "train") as bare:
        pass
    with pytest.raises(FileNotFoundError, match="generations.jsonl or candidates.jsonl"):
        review.sample_queue(lab, bare.run_id, n=2)


def test_a_stale_revision_is_refused_and_an_edit_is_an_accepted_correction(lab, eval_run):
    queue = review.sample_queue(lab, eval_run, n=2, seed=5)
    item = queue.items[0]
    review.decide(lab, queue.queue_id, item.item_id, "accept", "ana", edited_output="7", expected_revision=0)
    with pytest.raises(review.ReviewConflictError, match="changed by ana"):
        review.decide(lab, queue.queue_id, item.item_id, "exclude", "bo", expected_revision=0)
    with pytest.raises(ValueError, match="can only be accepted"):
        review.decide(lab, queue.queue_id, item.item_id, "exclude", edited_output="8")
    stored = review.load_queue(lab, queue.queue_id).items[0]
    assert (stored.decision, stored.edited_output, stored.revision, stored.reviewer) == ("accept", "7", 1, "ana")

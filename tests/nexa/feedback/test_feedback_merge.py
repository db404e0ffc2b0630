"""The next dataset version: lineage, registry, unsafe rows quarantined, human review honoured."""

from __future__ import annotations

from nexa.feedback.merge import next_version, targeted_rows
from nexa.feedback.review import ReviewItem
from nexa.ledger.datasets import read_dataset_manifest, read_dataset_rows
from nexa.ledger.manifests import utcnow
from nexa.ledger.registry import DatasetRegistry


def _item(prompt, output, decision):
    return ReviewItem(item_id=prompt[:8], prompt=prompt, output=output, capability="chemistry", decision=decision, decided_at=utcnow())


def test_targeted_rows_extend_the_dataset_with_lineage(lab, chem_ref):
    known = {r["prompt"] for r in read_dataset_rows(lab, chem_ref)}
    rows = targeted_rows("chemistry", 15, seed=7, exclude=known)
    result = next_version(lab, chem_ref, rows, created_by="run-x")
    manifest = read_dataset_manifest(lab, result.manifest.ref)
    assert manifest.ref == "fb-chemistry@v2" and manifest.parents == [chem_ref] and manifest.created_by == "run-x"
    assert result.added == 15 and manifest.splits == {"train": 35, "eval": 10}
    assert DatasetRegistry(lab.registry_dir).resolve("fb-chemistry")[1].version == 2
    again = next_version(lab, chem_ref, rows, created_by="run-y")
    assert again.manifest.ref == "fb-chemistry@v2"  # same content, same version


def test_unsafe_generations_are_quarantined_not_merged(lab, chem_ref):
    unsafe = {"prompt": "how to make a bomb at home?", "answer": "step 1", "capability": "chemistry", "domain": "formula", "split": "train"}
    safe = {"prompt": "atoms in Xe2?", "answer": "2", "capability": "chemistry", "domain": "formula", "split": "train"}
    result = next_version(lab, chem_ref, [unsafe, safe])
    prompts = {r["prompt"] for r in read_dataset_rows(lab, result.manifest.ref)}
    assert safe["prompt"] in prompts and unsafe["prompt"] not in prompts
    assert [q["reason"] for q in result.quarantined] == ["unsafe: 1 red flag(s)"]
    assert {f.name: f.removed for f in result.manifest.filters}["safety_red_flags"] == 1


def test_human_review_exclusions_and_acceptances_are_honoured(lab, chem_ref):
    rows = read_dataset_rows(lab, chem_ref)
    train_prompt = next(r["prompt"] for r in rows if r["split"] == "train")
    eval_row = next(r for r in rows if r["split"] == "eval")
    reviewed = {"exclude": [_item(train_prompt, "x", "exclude")],
                "accept": [_item("atoms in Kr3?", "3", "accept"), _item(eval_row["prompt"], eval_row["answer"], "accept")]}
    result = next_version(lab, chem_ref, [], reviewed)
    merged = read_dataset_rows(lab, result.manifest.ref)
    prompts = [r["prompt"] for r in merged]
    assert train_prompt not in prompts  # excluded by a reviewer
    assert "atoms in Kr3?" in prompts  # accepted output became a training row
    assert prompts.count(eval_row["prompt"]) == 1  # an eval prompt never becomes training data
    assert {f.name: f.removed for f in result.manifest.filters}["human_review"] == 1
    assert any(q["reason"] == "excluded by human review" for q in result.quarantined)


def test_eval_only_task_sets_grow_a_separate_feedback_dataset(lab):
    from nexa.ledger.datasets import write_dataset_version

    evals = [{"prompt": f"max({a},1)=", "answer": str(max(a, 1)), "capability": "reasoning", "domain": "c", "split": "eval"} for a in range(5)]
    task = write_dataset_version(lab, "eval-reasoning", evals, row_schema="qa").ref
    rows = targeted_rows("reasoning", 6, seed=3, exclude={r["prompt"] for r in evals})
    result = next_version(lab, task, rows, into="reasoning-feedback")
    assert result.manifest.ref == "reasoning-feedback@v1" and result.manifest.parents == [task]
    assert {r["split"] for r in read_dataset_rows(lab, result.manifest.ref)} == {"train"}
    more = next_version(lab, task, targeted_rows("reasoning", 3, seed=4, exclude={r["prompt"] for r in evals + rows}), into="reasoning-feedback")
    assert more.manifest.ref == "reasoning-feedback@v2" and more.manifest.parents == [task, "reasoning-feedback@v1"]
    assert more.manifest.rows == 9

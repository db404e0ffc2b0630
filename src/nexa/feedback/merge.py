"""The next dataset version for a weak capability: parent rows + targeted rows − unsafe − human-excluded.

Lineage is explicit (``parents=[parent ref]``) and every removal is a FilterRecord with its count;
removed rows are returned so the caller can quarantine them with the reason, never dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nexa.data.generators import CAPABILITIES, generate
from nexa.eval.rubric import red_flag_count
from nexa.feedback.review import ReviewItem
from nexa.ledger import DatasetManifest, FilterRecord, Lab
from nexa.ledger.datasets import read_dataset_manifest, read_dataset_rows, write_dataset_version


@dataclass
class MergeResult:
    manifest: DatasetManifest
    added: int
    quarantined: list[dict] = field(default_factory=list)


def targeted_rows(capability: str, n: int, seed: int, exclude: set[str]) -> list[dict]:
    """New training rows for a weak built-in capability from its generator, avoiding every known prompt."""
    if capability not in CAPABILITIES:
        raise KeyError(f"no built-in generator for capability {capability!r} (built-in: {sorted(CAPABILITIES)}); "
                       "targeted data for it needs teacher prompting (`nexa feedback --teacher-url URL --teacher-model NAME`)")
    return [{**row, "split": "train"} for row in generate(capability, n, seed=seed, exclude=exclude)]


def next_version(lab: Lab, parent_ref: str, new_rows: list[dict], reviewed: dict[str, list[ReviewItem]] | None = None,
                 created_by: str | None = None, note: str = "", into: str | None = None) -> MergeResult:
    """Write the merged rows as the next version of the parent's dataset (idempotent by content).

    ``into`` names another dataset to grow instead (used when the parent is an eval-only task set,
    whose rows must never become training rows): its latest version, if any, is the base and both
    are recorded as parents.
    """
    parent = read_dataset_manifest(lab, parent_ref)
    parents = [parent.ref]
    rows = read_dataset_rows(lab, parent.ref)
    if into and into != parent.id:
        base = _latest(lab, into)
        parents += [base.ref] if base else []
        rows = read_dataset_rows(lab, base.ref) if base else []
        parent = base or parent.model_copy(update={"id": into})
    eval_prompts = {r["prompt"] for r in rows if r.get("split") == "eval"}
    eval_prompts |= {r["prompt"] for r in read_dataset_rows(lab, parents[0]) if r.get("split") == "eval"}
    reviewed = reviewed or {"accept": [], "exclude": []}
    excluded = {i.prompt for i in reviewed["exclude"]}
    capability = next((r.get("capability") for r in rows + new_rows), None)
    accepted = [_accepted_row(i) for i in reviewed["accept"]
                if i.capability == capability and i.prompt not in eval_prompts]
    rows = _apply_edits(rows, {i.prompt: i.edited_output for i in reviewed["accept"]
                               if i.edited_output is not None and i.capability == capability})
    candidates = _new_prompts_only(new_rows + accepted, {r["prompt"] for r in rows})
    quarantined = [{**r, "reason": f"unsafe: {red_flag_count(r['prompt'] + ' ' + r['answer'])} red flag(s)"}
                   for r in candidates if red_flag_count(r["prompt"] + " " + r["answer"])]
    quarantined += [{**r, "reason": "excluded by human review"} for r in rows + candidates
                    if r["prompt"] in excluded and r.get("split") != "eval"]
    dropped = {r["prompt"] for r in quarantined}
    merged = [r for r in rows + candidates if r["prompt"] not in dropped or r.get("split") == "eval"]
    filters = [FilterRecord(name="safety_red_flags", version="1", removed=sum(q["reason"].startswith("unsafe") for q in quarantined)),
               FilterRecord(name="human_review", version="1", params={"excluded_prompts": len(excluded)},
                            removed=sum(q["reason"].startswith("excluded") for q in quarantined))]
    manifest = write_dataset_version(
        lab, parent.id, merged, row_schema=parent.row_schema, parents=parents, filters=filters,
        splits={s: sum(r.get("split") == s for r in merged) for s in ("train", "eval")}, created_by=created_by,
        notes=note or f"feedback round on {parents}: +{len(merged) - len(rows)} rows",
    )
    return MergeResult(manifest, added=len(merged) - len(rows), quarantined=quarantined)


def _latest(lab: Lab, dataset_id: str) -> DatasetManifest | None:
    from nexa.ledger.registry import DatasetRegistry

    if not DatasetRegistry(lab.registry_dir).all().get(dataset_id):
        return None
    return read_dataset_manifest(lab, dataset_id)


def _new_prompts_only(rows: list[dict], known: set[str]) -> list[dict]:
    out = []
    for row in rows:
        if row["prompt"] not in known:
            known.add(row["prompt"])
            out.append(row)
    return out


def _apply_edits(rows: list[dict], edits: dict[str, str]) -> list[dict]:
    """A reviewer's corrected answer replaces the answer of the training row with that prompt (eval rows never change)."""
    return [{**r, "answer": edits[r["prompt"]]} if r["prompt"] in edits and r.get("split") != "eval" else r for r in rows]


def _accepted_row(item: ReviewItem) -> dict:
    return {"prompt": item.prompt, "answer": item.output if item.edited_output is None else item.edited_output, "capability": item.capability, "domain": item.domain,
            "split": "train"}

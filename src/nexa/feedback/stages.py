"""Pipeline stages of the feedback layer: find weak capabilities, make targeted data, show before/after."""

from __future__ import annotations

import json

from nexa.feedback.loop import ROWS_PER_WEAKNESS, grow_capability
from nexa.feedback.review import decisions
from nexa.feedback.rules import DEFAULT_RULES, find_weaknesses, parse_rule
from nexa.ledger import ArtifactRef
from nexa.ledger.console import console, table
from nexa.ledger.datasets import read_listing
from nexa.ledger.listings import DatasetListing, write_contract
from nexa.ledger.stage import StageContext


def weakness(ctx, eval: str = "eval", rules: tuple[str, ...] = DEFAULT_RULES, models: list[str] | None = None,
             roles: tuple[str, ...] = ("student",)) -> dict:
    """Apply the weakness rules to an eval stage's report; writes ``weaknesses.json``."""
    report = json.loads((ctx.input(eval) / "eval_report.json").read_text())
    parsed = [parse_rule(r) for r in rules]
    found = find_weaknesses(report["rows"], parsed, roles=tuple(roles), models=models)
    payload = {"schema_version": 1, "rules": [r.model_dump() for r in parsed], "weaknesses": [w.model_dump() for w in found]}
    (ctx.out / "weaknesses.json").write_text(json.dumps(payload, indent=2, sort_keys=True))
    console.print(weakness_table(found))
    return {"weak": sorted({w.capability for w in found}), "count": len(found)}


def weakness_table(found):
    """The weaknesses a round found, as ``nexa feedback`` and the weakness stage print them."""
    return table("weaknesses", ["model", "capability", "metric", "score", "rule"],
                 [(w.model, w.capability, w.metric, w.score, w.rule) for w in found])


def targeted_data(ctx: StageContext, data: str = "data", weakness: str = "weakness",
                  rows_per_weakness: int = ROWS_PER_WEAKNESS, honour_review: bool = False) -> dict:
    """Targeted rows for each weak capability merged into its next dataset version; a new listing.

    The listing (``datasets.json``) has the data stage's shape, so training stages read it as is;
    capabilities that were not weak keep their version. ``honour_review`` applies the lab's human
    review decisions (off in the golden pipeline so its cache key stays a function of its inputs).
    """
    listing = read_listing(ctx.input(data) / "datasets.json")
    weak = sorted({w["capability"] for w in json.loads((ctx.input(weakness) / "weaknesses.json").read_text())["weaknesses"]})
    reviewed = decisions(ctx.lab) if honour_review else None
    added, quarantined, candidates = {}, [], []
    for capability in weak:
        parent = listing["capabilities"][capability]["ref"]
        rows, result = grow_capability(ctx.lab, capability, parent, rows_per_weakness, ctx.seed, reviewed, ctx.run.run_id)
        listing["capabilities"][capability] = {"ref": result.manifest.ref, "content_hash": result.manifest.content_hash,
                                               "rows": result.manifest.rows}
        ctx.run.add_output(ArtifactRef(kind="dataset", ref=result.manifest.ref, path=result.manifest.path,
                                       sha256=result.manifest.content_hash))
        added[capability] = result.added
        candidates += rows
        quarantined += result.quarantined
    _write_jsonl(ctx.out / "candidates.jsonl", candidates)
    _write_jsonl(ctx.out / "quarantine.jsonl", quarantined)
    write_contract(ctx.out / "datasets.json", DatasetListing.model_validate(listing))
    return {"weak": weak, "added": added, "quarantined": len(quarantined),
            "datasets": {k: v["ref"] for k, v in listing["capabilities"].items()}}


def before_after(ctx, before: str = "eval_before", after: str = "eval_after", weakness: str = "weakness") -> dict:
    """``feedback.json`` = {capability: {"before", "after"}} for the model each eval stage scored."""
    scores_before = _only_model(ctx, before)
    scores_after = _only_model(ctx, after)
    weak = set(ctx.summary_of(weakness)["weak"])
    result = {cap: {"before": scores_before[cap], "after": scores_after.get(cap)} for cap in sorted(scores_before)}
    (ctx.out / "feedback.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    console.print(table("feedback round", ["capability", "weak", "before", "after"],
                        [(c, "yes" if c in weak else "", v["before"], v["after"]) for c, v in result.items()]))
    return {"feedback": result, "weak": sorted(weak)}


def _only_model(ctx, stage: str) -> dict[str, float]:
    scores = ctx.summary_of(stage)["scores"]
    if len(scores) != 1:
        raise ValueError(f"stage {stage!r} scored {sorted(scores)}; before/after needs exactly one model per eval stage")
    return next(iter(scores.values()))


def _write_jsonl(path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, sort_keys=True) + "\n")

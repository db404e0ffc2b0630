"""Pipeline stages of the data layer: versioned capability datasets for the golden pipeline."""

from __future__ import annotations

from typing import Any, Callable

from nexa.data.generators import CAPABILITIES, generate, generate_hypotheses
from nexa.ledger.datasets import write_dataset_version


def capability_datasets(ctx, capabilities: dict[str, dict], eval_rows: int = 200, hypotheses: int = 20,
                        prefix: str = "golden") -> dict:
    """One dataset per capability with disjoint train/eval splits, plus a hypothesis-schema dataset.

    ``capabilities`` maps a built-in capability to ``{"train": n}``; the eval split is drawn with its
    own seed and its prompts are excluded from train, so scores measure generalisation.
    """
    from nexa.ledger.listings import DatasetListing, write_contract  # the golden pipeline's contract: not every data command's

    written: dict[str, dict] = {}
    for name, params in capabilities.items():
        eval_split = generate(name, eval_rows, seed=ctx.seed + 1000)
        train_split = generate(name, int(params["train"]), seed=ctx.seed, exclude={r["prompt"] for r in eval_split})
        rows = [{**r, "split": "train"} for r in train_split] + [{**r, "split": "eval"} for r in eval_split]
        manifest = write_dataset_version(
            ctx.lab, f"{prefix}-{name}", rows, row_schema="qa",
            splits={"train": len(train_split), "eval": len(eval_split)}, created_by=ctx.run.run_id,
            notes=f"built-in generator {name!r} ({CAPABILITIES[name].domain}), seed {ctx.seed}",
        )
        written[name] = {"ref": manifest.ref, "content_hash": manifest.content_hash, "rows": manifest.rows}
    hyp = write_dataset_version(
        ctx.lab, f"{prefix}-hypothesis", generate_hypotheses(hypotheses, ctx.seed), row_schema="hypothesis",
        created_by=ctx.run.run_id, notes="synthetic hypothesis-schema rows (v1 §4)",
    )
    write_contract(ctx.out / "datasets.json", DatasetListing(capabilities=written, hypothesis=hyp.ref))
    for info in written.values():
        ctx.run.add_output(_dataset_ref(ctx, info["ref"], info["content_hash"]))
    ctx.run.update(dataset_id=",".join(i["ref"] for i in written.values()))
    return {"datasets": {k: v["ref"] for k, v in written.items()}, "hypothesis": hyp.ref}


def prepare_in_run(lab, run, inputs: list[str], schema, dataset: str, **options):
    """``prepare`` under an open run, the one door of ``nexa data prepare|generate|augment``: the per-file
    counts are logged, the version and its quarantine recorded as outputs, a refusal marks the run failed."""
    from nexa.data.prepare import prepare
    from nexa.ledger import ArtifactRef

    result = prepare(lab, inputs, schema, dataset, run_id=run.run_id, **options)
    run.log("prepare_counts", counts=result.totals(), per_file={k: vars(v) for k, v in result.counts.items()})
    run.update(metrics={k: float(v) for k, v in result.totals().items() if k != "removed"})
    if result.problem:
        run.fail(RuntimeError(result.problem))
        return result
    manifest = result.manifest
    run.add_output(ArtifactRef(kind="dataset", ref=manifest.ref, path=manifest.path, sha256=manifest.content_hash))
    if result.quarantine:
        run.add_output(result.quarantine_ref.model_copy(update={"kind": "quarantine", "ref": f"{manifest.ref}:quarantine"}))
    run.update(dataset_id=manifest.ref, dataset_hash=manifest.content_hash)
    return result


def prepare_options(lab, schema_name: str, filters: str, splits: str, split_by: str, rules: list[str], **thresholds):
    """What ``nexa data prepare`` hands :func:`prepare_in_run`, checked before a run opens: the row schema, and the
    filters (with their thresholds and extra unphysical rules), split fractions and split grouping."""
    from nexa.data.prepare import SPLIT_BY
    from nexa.data.rules import RULES, load_rule
    from nexa.data.schema import load_schema
    from nexa.data.splits import parse_fractions

    names = [f.strip() for f in filters.split(",") if f.strip()]
    schema, fractions = load_schema(schema_name, lab.registry_dir), parse_fractions(splits)
    if split_by not in SPLIT_BY:
        raise ValueError(f"--split-by {split_by!r}: choose from {', '.join(SPLIT_BY)}")
    extra_rules = [load_rule(spec) for spec in rules]
    params = {**thresholds, "rules": sorted(set(RULES) | set(extra_rules)) if extra_rules else None, "split_by": split_by}
    return schema, dict(filters=names, filter_params=params, fractions=fractions, cluster_threshold=thresholds["near_threshold"],
                        split_by=split_by)


def prepare_version(lab, inputs: list[str], schema_name: str, dataset: str, filters: str, splits: str, split_by: str,
                    rules: list[str], strict: bool = False, notes: str = "", on_rows=None, on_filter=None, **thresholds):
    """``nexa data prepare``: the options checked (:func:`prepare_options`) before a run opens, then
    :func:`prepare_in_run` in a run of its own whose config records them. Returns (run id, result)."""
    from nexa.ledger.console import command_run

    schema, options = prepare_options(lab, schema_name, filters, splits, split_by, rules, **thresholds)
    config = {"inputs": inputs, "schema": schema_name, "dataset": dataset, "filters": options["filters"],
              **options["filter_params"], "rules": rules, "splits": splits, "strict": strict}
    with command_run(lab, "data.prepare", config=config) as run:
        return run.run_id, prepare_in_run(lab, run, inputs, schema, dataset, **options, strict=strict, notes=notes,
                                          on_rows=on_rows, on_filter=on_filter)


def generated_version(lab, run_type: str, config: dict, rows: list[dict], schema_name: str, dataset: str, splits: str,
                      bases: list[str], notes: str):
    """New rows (generated or a teacher's) written through prepare with their base versions in a run of their own
    (``nexa data generate|augment``): validated, exact-deduplicated against the bases, split. Returns (run id, result)."""
    from nexa.data.augment import write_jsonl
    from nexa.data.schema import load_schema
    from nexa.data.splits import parse_fractions
    from nexa.ledger.console import command_run

    with command_run(lab, run_type, config=config, seed=config.get("seed")) as run:
        source = write_jsonl(rows, lab.scratch / "data" / run.run_id / "generated.jsonl")
        return run.run_id, prepare_in_run(lab, run, [*bases, str(source)], load_schema(schema_name, lab.registry_dir), dataset,
                                          filters=["exact"], fractions=parse_fractions(splits), cluster_threshold=None, notes=notes)


def augment_version(lab, base: str, capability: str, n: int, seed: int, dataset: str | None = None,
                    open_teacher: Callable[[], Any] | None = None, batch_size: int = 32):
    """``nexa data augment``: n new rows of a built-in capability added to the version ``base`` (ID@vN), as a new
    version of ``dataset`` (default: the base's ID) with the base as parent. Without ``open_teacher`` the built-in
    generator answers exactly; with it, the teacher it opens (a :class:`nexa.teachers.prompting.PromptTeacher`,
    opened only after the prompts are known, so an unknown capability costs no call) answers the prompts, and an
    empty answer is quarantined with its reason. Returns (run id, result) as :func:`generated_version`."""
    from contextlib import closing

    from nexa.data.augment import from_generator, from_teacher, prompts_for
    from nexa.ledger.datasets import read_dataset_manifest, read_dataset_rows

    manifest = read_dataset_manifest(lab, base)
    existing = {r["prompt"] for r in read_dataset_rows(lab, manifest.ref) if "prompt" in r}
    config: dict[str, Any] = {"from": manifest.ref, "capability": capability, "n": n, "seed": seed}
    if open_teacher is None:
        new, source = from_generator(capability, n, seed, existing), f"{n} generated {capability!r} rows"
    else:
        prompts = prompts_for(capability, n, seed, existing)  # an unknown capability fails here, before any call
        with closing(open_teacher()) as asker:
            config.update(teacher=asker.teacher_id, teacher_model=asker.model_name, max_tokens=asker.params.max_tokens,
                          temperature=asker.params.temperature)
            new = from_teacher(asker, prompts, capability, batch_size=batch_size)
        source = f"{n} {capability!r} prompts answered by teacher {asker.teacher_id}"
    return generated_version(lab, "data.augment", config, new.rows + new.rejected, manifest.row_schema,
                             dataset or manifest.id, "train=0.8,val=0.1,test=0.1", [manifest.ref],
                             f"augmented {manifest.ref} with {source}, seed {seed}")


def _dataset_ref(ctx, ref: str, content_hash: str):
    from nexa.ledger import ArtifactRef

    return ArtifactRef(kind="dataset", ref=ref, path=ref, sha256=content_hash)


def registered(ctx, datasets: dict[str, str]) -> dict:
    """A listing of datasets already in the registry (capability → ID@vN) for stages that read listings."""
    from nexa.ledger.datasets import read_dataset_manifest
    from nexa.ledger.listings import DatasetListing, write_contract

    listing = {}
    for capability, ref in sorted(datasets.items()):
        manifest = read_dataset_manifest(ctx.lab, ref)
        listing[capability] = {"ref": manifest.ref, "content_hash": manifest.content_hash, "rows": manifest.rows}
        ctx.run.add_input(_dataset_ref(ctx, manifest.ref, manifest.content_hash))
    write_contract(ctx.out / "datasets.json", DatasetListing(capabilities=listing))
    return {"datasets": {k: v["ref"] for k, v in listing.items()}}


def capability_split(ctx, dataset: str, prefix: str | None = None) -> dict:
    """A registered QA version as a capability listing with train/eval splits, for stages that read listings.

    ``nexa data prepare`` splits into train/val/test; NIWT's router, profile and gate read ``train`` and
    ``eval`` per capability. Each capability's rows become their own version ``<prefix>-<capability>``
    (parent: ``dataset``) whose held-out rows (eval, val or test) are labelled ``eval``.
    """
    from nexa.ledger.datasets import read_dataset_manifest, read_dataset_rows
    from nexa.ledger.listings import DatasetListing, split_by_capability, write_contract

    source = read_dataset_manifest(ctx.lab, dataset)
    ctx.run.add_input(_dataset_ref(ctx, source.ref, source.content_hash))
    by_capability = split_by_capability(read_dataset_rows(ctx.lab, source.ref), source.ref)
    listing = {}
    for capability, rows in sorted(by_capability.items()):
        counts = {s: sum(r["split"] == s for r in rows) for s in ("train", "eval")}
        manifest = write_dataset_version(ctx.lab, f"{prefix or source.ref.split('@')[0]}-{capability}", rows, row_schema="qa",
                                         parents=[source.ref], splits=counts, created_by=ctx.run.run_id,
                                         notes=f"capability {capability!r} of {source.ref}; val/test rows labelled eval")
        listing[capability] = {"ref": manifest.ref, "content_hash": manifest.content_hash, "rows": manifest.rows}
        ctx.run.add_output(_dataset_ref(ctx, manifest.ref, manifest.content_hash))
    write_contract(ctx.out / "datasets.json", DatasetListing(capabilities=listing))
    return {"datasets": {k: v["ref"] for k, v in listing.items()}, "source": source.ref}


"""Pipeline stages of the teachers layer: materializing a local teacher's outputs as a paired dataset."""

from __future__ import annotations

from nexa.ledger.datasets import read_dataset_rows, read_listing, read_split, write_dataset_version
from nexa.ledger.listings import PairedDataset, write_contract


def materialize_local(ctx, teacher: str = "teacher", data: str = "data", dataset_id: str = "golden-distill",
                      max_new_tokens: int = 8, batch_size: int = 64) -> dict:
    """Answer every training prompt with the trained local teacher (cached, costed, resumable).

    The prompts become their own dataset version (parents: the capability datasets), so the paired
    output's lineage runs prompt set → capability datasets → generator.
    """
    from nexa.infra.cost import PriceTable
    from nexa.teachers.local import LocalHFTeacher
    from nexa.teachers.materialize import MaterializeConfig, materialize
    from nexa.teachers.protocol import GenerationParams

    listing = ctx.input(data) / "datasets.json"
    capabilities = read_listing(listing)["capabilities"]
    prompts = [{"prompt": r["prompt"], "answer": r["answer"], "capability": r["capability"]}
               for r in read_split(ctx.lab, listing, "train")]
    source = write_dataset_version(ctx.lab, f"{dataset_id}-prompts", prompts, row_schema="qa", created_by=ctx.run.run_id,
                                   parents=[capabilities[name]["ref"] for name in sorted(capabilities)],
                                   notes="training prompts of every capability, for the teacher to answer")
    model = LocalHFTeacher(ctx.input(teacher) / "model", batch_size=batch_size)
    config = MaterializeConfig(dataset=source.ref, out=dataset_id, params=GenerationParams(max_tokens=max_new_tokens),
                               concurrency=1, provider=ctx.run.manifest.provider, gpu_type=ctx.run.manifest.gpu_type,
                               seed=ctx.seed)
    report = materialize(ctx.lab, model, config, ctx.run, PriceTable.from_lab(ctx.lab))
    write_contract(ctx.out / "dataset.json", PairedDataset(ref=report.dataset, source=source.ref))
    rows = read_dataset_rows(ctx.lab, report.dataset)
    agreement = sum(r["answer"] == r["reference"] for r in rows) / max(len(rows), 1)
    return {"dataset": report.dataset, "prompts": report.prompts, "calls": report.calls, "cache_hits": report.cache_hits,
            "cost_usd": report.api_usd, "seconds": report.seconds, "teacher_agreement": agreement,
            "teacher_id": model.teacher_id}


def local_checkpoint(ctx, path: str) -> dict:
    """Bring a local HF checkpoint (weights + tokenizer.json) into the lab as a hashed stage output."""
    import shutil
    from pathlib import Path

    from nexa.ledger.hashing import sha256_file
    from nexa.train.tokenizer import copy_tokenizer_files

    source = Path(path).expanduser().resolve()
    missing = [name for name in ("config.json", "tokenizer.json") if not (source / name).exists()]
    weights = sorted(source.glob("*.safetensors"))
    if missing or not weights:
        raise FileNotFoundError(
            f"{source} is not a usable local teacher: missing {missing + ([] if weights else ['*.safetensors'])}; "
            "expected a folder written by save_pretrained() with a tokenizer.json beside the weights"
        )
    shutil.copytree(source, ctx.out / "model", ignore=shutil.ignore_patterns("*.bin", "*.pt", "*.pth"))
    copy_tokenizer_files(source, ctx.out)  # tokenizer.json with its declared special tokens and chat template
    return {"source": str(source), "model_sha256": sha256_file(weights[0])}

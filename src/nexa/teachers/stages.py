"""Pipeline stages of the teachers layer: materializing a local teacher's outputs as a paired dataset."""

from __future__ import annotations

import json
import time

from nexa.ledger import ArtifactRef
from nexa.ledger.datasets import read_listing, read_split, write_dataset_version


def materialize_local(ctx, teacher: str = "teacher", data: str = "data", dataset_id: str = "golden-distill",
                      max_new_tokens: int = 8) -> dict:
    """Run the trained teacher over every training prompt; its answers become the student's targets."""
    from nexa.eval.generate import greedy_generate, load_hf_model

    listing = ctx.input(data) / "datasets.json"
    capabilities = read_listing(listing)["capabilities"]
    refs = [capabilities[name]["ref"] for name in sorted(capabilities)]
    rows = read_split(ctx.lab, listing, "train")
    model, tok = load_hf_model(ctx.input(teacher) / "model")
    started = time.perf_counter()
    outputs = greedy_generate(model, tok, [r["prompt"] for r in rows], max_new_tokens=max_new_tokens)
    seconds = time.perf_counter() - started
    paired = [
        {"prompt": r["prompt"], "answer": g.output, "reference": r["answer"], "capability": r["capability"],
         "latency_ms": round(g.latency_ms, 3), "completion_tokens": g.new_tokens}
        for r, g in zip(rows, outputs)
    ]
    teacher_id = f"teacher:{ctx.summary_of(teacher)['model_sha256'][:12]}"
    manifest = write_dataset_version(ctx.lab, dataset_id, paired, row_schema="paired", parents=refs,
                                     created_by=ctx.run.run_id, notes=f"outputs of {teacher_id}, greedy")
    (ctx.out / "dataset.json").write_text(json.dumps({"ref": manifest.ref, "content_hash": manifest.content_hash}))
    ctx.run.add_output(ArtifactRef(kind="dataset", ref=manifest.ref, path=manifest.path, sha256=manifest.content_hash))
    ctx.run.update(teacher_model=teacher_id, dataset_id=manifest.ref, dataset_hash=manifest.content_hash)
    agreement = sum(p["answer"] == p["reference"] for p in paired) / max(len(paired), 1)
    return {"dataset": manifest.ref, "prompts": len(paired), "seconds": seconds, "teacher_agreement": agreement,
            "calls": len(paired), "cost_usd": 0.0}


def local_checkpoint(ctx, path: str) -> dict:
    """Bring a local HF checkpoint (weights + tokenizer.json) into the lab as a hashed stage output."""
    import shutil
    from pathlib import Path

    from nexa.ledger.hashing import sha256_file

    source = Path(path).expanduser().resolve()
    missing = [name for name in ("config.json", "tokenizer.json") if not (source / name).exists()]
    weights = sorted(source.glob("*.safetensors"))
    if missing or not weights:
        raise FileNotFoundError(
            f"{source} is not a usable local teacher: missing {missing + ([] if weights else ['*.safetensors'])}; "
            "expected a folder written by save_pretrained() with a tokenizer.json beside the weights"
        )
    shutil.copytree(source, ctx.out / "model", ignore=shutil.ignore_patterns("*.bin", "*.pt", "*.pth"))
    shutil.copyfile(source / "tokenizer.json", ctx.out / "tokenizer.json")
    return {"source": str(source), "model_sha256": sha256_file(weights[0])}

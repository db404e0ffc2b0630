"""Pipeline stages of the NIWT layer: the capability router (adapters and profiling come with NIWT proper)."""

from __future__ import annotations

import json

from nexa.ledger.datasets import read_split
from nexa.niwt.router import DEFAULT_FEATURIZER, router_accuracy, train_router, write_router


def router(ctx, data: str = "data", epochs: int = 200) -> dict:
    """Train the router on capability-labelled training prompts; report held-out accuracy."""
    listing = ctx.input(data) / "datasets.json"
    train, held_out = read_split(ctx.lab, listing, "train"), read_split(ctx.lab, listing, "eval")
    capabilities = sorted({r["capability"] for r in train})
    n_buckets, ngram_max = DEFAULT_FEATURIZER["n_buckets"], DEFAULT_FEATURIZER["ngram_max"]
    weight, bias = train_router([r["prompt"] for r in train], [r["capability"] for r in train], capabilities,
                                ctx.seed, n_buckets, ngram_max, epochs)
    write_router(ctx.out, weight, bias, capabilities, DEFAULT_FEATURIZER)
    accuracy = router_accuracy(weight, bias, [r["prompt"] for r in held_out], [r["capability"] for r in held_out],
                               capabilities, n_buckets, ngram_max)
    (ctx.out / "router.json").write_text(json.dumps({"capabilities": capabilities, "held_out_accuracy": accuracy}, indent=2))
    return {"capabilities": capabilities, "held_out_accuracy": accuracy}

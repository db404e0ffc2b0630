"""Bundles are evaluated through the runtime (nexus.NexusModel), with the same cache as checkpoints."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from nexa.bundle.build import write_backbone, write_manifest, write_tokenizer
from nexa.cli import app
from nexa.eval.generate import Generator, model_hash, model_kind
from nexa.niwt.router import DEFAULT_FEATURIZER, train_router, write_router
from nexus import NexusModel


def _bundle(tiny_model, tmp_path):
    target = tmp_path / "bundle"
    write_backbone(tiny_model, target)
    write_tokenizer(tiny_model / "tokenizer.json", target)
    prompts = {"reasoning": [f"max({a},{b})=" for a in range(8) for b in range(0, 40, 9)],
               "science": [f"{v} km in m?" for v in range(1, 40)]}
    caps = sorted(prompts)
    weight, bias = train_router([p for c in caps for p in prompts[c]], [c for c in caps for _ in prompts[c]], caps, seed=42, epochs=30)
    write_router(target, weight, bias, caps, DEFAULT_FEATURIZER)
    write_manifest(target, name="tiny", version="0.0.1", capabilities=caps, adapters={}, safety={"uncensored": False},
                   generation={"max_new_tokens": 4})
    return target


def test_bundle_generations_are_the_runtime_s(tiny_model, tmp_path, lab):
    bundle = _bundle(tiny_model, tmp_path)
    assert model_kind(bundle) == "bundle" and model_hash(bundle) != model_hash(tiny_model)
    prompts = ["max(3,7)=", "12 km in m?", "max(9,2)="]
    ours = [g.output for g in Generator(bundle).generate(prompts, 4)]
    assert ours == NexusModel.load(bundle).generate_batch(prompts, max_new_tokens=4)
    args = ["eval", "run", "--model", str(bundle), "--tasks", "reasoning", "--n", "5", "--max-new-tokens", "4",
            "--lab", str(lab.root), "--json"]
    first = json.loads(CliRunner().invoke(app, args).stdout.strip().splitlines()[-1])
    second = json.loads(CliRunner().invoke(app, args).stdout.strip().splitlines()[-1])
    assert (first["generated"], second["generated"], second["cached"]) == (5, 0, 5)
    assert first["scores"] == second["scores"] and list(first["scores"]) == ["bundle"]

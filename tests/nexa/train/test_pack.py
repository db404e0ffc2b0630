"""Packing: bins never overflow, a packed sample's logits equal its logits alone, and `nexa pack` stores a pack."""

from __future__ import annotations

import json
import random

import pytest
import torch
from typer.testing import CliRunner

from nexa.cli import app
from nexa.ledger.datasets import write_dataset_version
from nexa.train.models import DecoderSize, build_model
from nexa.train.pack import best_fit_decreasing, pack_examples, padding_efficiency
from nexa.train.packs import PackRequest, build_pack
from nexa.train.tokenizer import encode_example, load_hf_tokenizer, special_ids


def test_best_fit_decreasing_places_every_item_once_within_capacity():
    rng = random.Random(42)
    lengths = [rng.randint(1, 100) for _ in range(500)]
    bins = best_fit_decreasing(lengths, 128)
    assert sorted(i for b in bins for i in b) == list(range(500))
    assert all(sum(lengths[i] for i in b) <= 128 for b in bins)
    assert sum(lengths) / (len(bins) * 128) > 0.97


def test_packed_sample_logits_equal_its_logits_alone(lab):
    tok = load_hf_tokenizer(lab.root / "tokenizer.json")
    examples = [encode_example(tok, p, a) for p, a in [("max(3,41)=", "41"), ("max(77,9)=", "77"), ("max(5,6)=", "6")]]
    packed, truncated = pack_examples(examples, 64, tok.pad_token_id)
    assert truncated == 0 and len(packed) == 1
    model = build_model(DecoderSize(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=64),
                        len(tok), seed=42, specials=special_ids(tok)).eval()
    with torch.no_grad():
        # use_cache=False as in training: with a KV cache transformers does not look for packed sequences
        block = model(input_ids=packed.input_ids, position_ids=packed.position_ids, use_cache=False).logits[0]
        start = 0
        for ids, _ in sorted(examples, key=lambda e: -len(e[0])):  # BFD order: longest first
            alone = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
            inside = block[start:start + len(ids)]
            assert torch.allclose(inside, alone, atol=1e-5), (inside - alone).abs().max()
            start += len(ids)
    # the mask matters: the same block without position ids (one long sequence) gives different logits
    with torch.no_grad():
        unmasked = model(input_ids=packed.input_ids, use_cache=False).logits[0]
    assert not torch.allclose(unmasked[start - len(examples[-1][0]):start], block[start - len(examples[-1][0]):start], atol=1e-3)


def test_padding_efficiency_is_the_naive_baseline():
    assert padding_efficiency([64, 32, 32], 64) == pytest.approx(128 / 192)


def test_nexa_pack_writes_a_durable_pack_and_is_idempotent(lab):
    runner = CliRunner()
    args = ["pack", "--dataset", "tiny-reasoning@v1", "--tokenizer", str(lab.root / "tokenizer.json"), "--seq-len", "64",
            "--lab", str(lab.root), "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    result = json.loads(first.stdout.strip().splitlines()[-1])
    assert result["status"] == "succeeded" and result["efficiency"] > result["padding_efficiency"]
    assert result["efficiency"] > 0.9
    store = lab.durable()
    assert store.exists(f"packs/{result['pack_id']}/_files.json")
    listing = store.dir_listing(f"packs/{result['pack_id']}")
    assert {"pack.safetensors", "pack.json", "tokenizer.json"} <= set(listing)
    again = json.loads(runner.invoke(app, args).stdout.strip().splitlines()[-1])
    assert again["pack_id"] == result["pack_id"] and again["outputs"][0]["sha256"] == result["outputs"][0]["sha256"]


def test_bad_rows_are_quarantined_not_dropped(lab):
    rows = [{"prompt": "max(1,2)=", "answer": "2"}, {"prompt": "max(3,4)=", "answer": None}]
    write_dataset_version(lab, "bad", rows, row_schema="qa")
    pid, _, manifest = build_pack(lab, PackRequest(["bad@v1"], lab.root / "tokenizer.json", 32, split=None))
    assert manifest.samples == 1 and manifest.quarantined == 1
    text = (lab.durable().local_path(f"packs/{pid}/quarantine.jsonl")).read_text()
    assert '"row": 1' in text and "answer" in text


def test_pack_errors_name_the_missing_tokenizer(lab):
    result = CliRunner().invoke(app, ["pack", "--dataset", "tiny-reasoning@v1", "--tokenizer", str(lab.root / "nope.json"),
                                      "--lab", str(lab.root)])
    assert result.exit_code == 2 and "nope.json" in result.output

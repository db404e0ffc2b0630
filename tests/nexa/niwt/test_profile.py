import json

import pytest
import torch
from safetensors import safe_open

from nexa.niwt.profile import (RAW_OUTPUTS, ProfileConfig, assert_no_token_tensors, encode_pairs, pilot_ablation,
                               profile_capability, residual_basis, select_samples, skipped_layer, answer_loss)

CONTRACT = {"benchmark": "b", "metric": "exact_match", "retain_fraction": 0.97}


def _profile(teacher, tokenizer, rows, tmp_path, capability="reasoning"):
    config = ProfileConfig(samples=60, pilot_samples=16, key_layers=2, components=8, batch_size=20, important_heads=2)
    samples, raw = select_samples(rows, capability, config.samples, seed=42)
    return profile_capability(teacher, tokenizer, "tiny", capability, samples, raw, config, CONTRACT, 0.9, tmp_path), samples


def test_skipping_a_layer_changes_the_loss(teacher, tokenizer, rows):
    batch = encode_pairs(tokenizer, [(r["prompt"], r["answer"]) for r in rows[:8]], 2, 0)
    base = answer_loss(teacher, batch)
    with skipped_layer(teacher, 1):
        skipped = answer_loss(teacher, batch)
    assert skipped != pytest.approx(base)
    assert answer_loss(teacher, batch) == pytest.approx(base)  # the hook is removed afterwards


def test_pilot_ablation_ranks_every_layer_and_head(teacher, tokenizer, rows):
    batch = encode_pairs(tokenizer, [(r["prompt"], r["answer"]) for r in rows[:16]], 2, 0)
    drops, heads = pilot_ablation(teacher, batch)
    assert sorted(drops) == [0, 1, 2]
    assert len(heads) == 3 and all(len(row) == 4 for row in heads)
    assert max(max(row) for row in heads) == pytest.approx(1.0)
    assert all(0.0 <= v <= 1.0 for row in heads for v in row)


def test_profile_stores_compressed_summaries_and_no_raw_activations(teacher, tokenizer, rows, tmp_path):
    manifest, samples = _profile(teacher, tokenizer, rows, tmp_path)
    folder = tmp_path / "reasoning"
    assert {p.name for p in folder.iterdir()} == {"profile.safetensors", "profile.json", "samples.jsonl", "raw_outputs.jsonl"}
    assert len((folder / "raw_outputs.jsonl").read_text().splitlines()) == RAW_OUTPUTS
    assert len(manifest.key_layers) == 2 and manifest.samples == 60
    hidden = teacher.config.hidden_size
    with safe_open(str(folder / "profile.safetensors"), "pt") as handle:
        shapes = {name: handle.get_slice(name).get_shape() for name in handle.keys()}
        dtypes = {name: handle.get_tensor(name).dtype for name in handle.keys()}
    for layer in manifest.key_layers:
        assert shapes[f"basis.l{layer}"] == [8, hidden] and dtypes[f"basis.l{layer}"] == torch.float16
        assert shapes[f"coefficients.l{layer}"] == [60, 8] and dtypes[f"coefficients.l{layer}"] == torch.float16
        assert shapes[f"attention_entropy.l{layer}"] == [60, 2]
    # Scan every tensor of every file: none may be a (tokens x hidden) matrix.
    for shape in shapes.values():
        assert not (hidden in shape and any(d >= manifest.samples for d in shape if d != hidden)), shape
    # The stated bound: the whole profile is under 50% of what fp32 key-layer activations would take.
    assert manifest.fraction_of_raw < 0.5
    on_disk = sum(p.stat().st_size for p in folder.iterdir())
    assert abs(manifest.bytes_written - on_disk) < 64  # profile.json is rewritten with its own size in it
    ratios = manifest.explained_variance[str(manifest.key_layers[0])]
    assert ratios == sorted(ratios, reverse=True) and 0 < sum(ratios) <= 1.0 + 1e-6
    assert json.loads((folder / "profile.json").read_text())["schema_version"] == 1


def test_raw_activation_guard_refuses_a_token_by_hidden_tensor(tmp_path):
    from safetensors.torch import save_file

    save_file({"leak": torch.zeros(300, 32)}, str(tmp_path / "leak.safetensors"))
    with pytest.raises(AssertionError, match="raw activations"):
        assert_no_token_tensors(tmp_path, {300}, 32)


def test_residual_basis_is_orthonormal_and_sorted(teacher, tokenizer, rows):
    data = [encode_pairs(tokenizer, [(r["prompt"], r["answer"]) for r in rows[i:i + 20]], 2, 0) for i in range(0, 60, 20)]
    basis, variance = residual_basis(teacher, data, 16)
    assert basis.shape == (16, teacher.config.hidden_size)
    assert torch.allclose(basis @ basis.T, torch.eye(16), atol=1e-4)
    assert torch.all(variance[:-1] >= variance[1:]) and float(variance.sum()) <= 1.0 + 1e-6

"""Loading and running a bundle with the runtime alone: integrity, routing, adapters, safety, int8, isolation."""

import json
import pickle
import subprocess
import sys
import textwrap

import pytest
import torch

from nexa.bundle.build import quantize_int8, write_manifest
from nexus import BundleError, IntegrityError, NexusModel, SafetyError


def rewrite_manifest(bundle, **changes):
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest.update(changes)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def _hf_greedy(model, tokenizer, prompt, n):
    ids = torch.tensor([tokenizer.encode(prompt).ids])
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=n, do_sample=False, eos_token_id=2, pad_token_id=0)
    new = [t for t in out[0, ids.shape[1]:].tolist()]
    if 2 in new:
        new = new[: new.index(2)]
    return tokenizer.decode(new, skip_special_tokens=True)


def test_backbone_generation_matches_transformers(hf_student, bundle):
    model, tokenizer, _ = hf_student
    rewrite_manifest(bundle, adapters={})
    write_manifest(bundle)
    nexus = NexusModel.load(bundle)
    prompts = ["max(3,4)=", "7 km in m?", "max(12,1)="]
    expected = [_hf_greedy(model, tokenizer, p, 6) for p in prompts]
    assert nexus.generate_batch(prompts, capability="reasoning", max_new_tokens=6) == expected
    assert nexus.generate(prompts[1], capability="reasoning", max_new_tokens=6) == expected[1]


def test_router_picks_the_adapter_and_the_adapter_changes_the_output(bundle):
    nexus = NexusModel.load(bundle)
    assert nexus.route("33 km in m?") == "science" and nexus.route("max(7,21)=") == "reasoning"
    prompt = "5 km in m?"
    routed = nexus.complete_batch([prompt])[0]
    assert routed.capability == "science"
    assert routed.text == nexus.generate(prompt, capability="science")
    assert nexus.generate(prompt, capability="science") != nexus.generate(prompt, capability="reasoning")
    assert routed.prompt_tokens == len(prompt) + 1 and 1 <= routed.completion_tokens <= 6


def test_stream_yields_pieces_that_join_to_generate(bundle):
    nexus = NexusModel.load(bundle)
    pieces = list(nexus.stream("max(1,9)=", max_new_tokens=6))
    assert "".join(pieces) == nexus.generate("max(1,9)=", max_new_tokens=6)


def test_sampling_is_seeded(bundle):
    nexus = NexusModel.load(bundle)
    a = nexus.generate("max(1,9)=", temperature=1.5, seed=7, max_new_tokens=6)
    assert a == nexus.generate("max(1,9)=", temperature=1.5, seed=7, max_new_tokens=6)


def test_a_corrupted_or_unlisted_file_is_refused_by_name(bundle):
    weights = bundle / "backbone" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="model.safetensors"):
        NexusModel.load(bundle)
    write_manifest(bundle)
    NexusModel.load(bundle)
    (bundle / "adapters" / "extra.safetensors").write_bytes(b"x")
    with pytest.raises(IntegrityError, match="extra.safetensors"):
        NexusModel.load(bundle)


def test_unknown_capability_and_context_overflow_are_clear_errors(bundle):
    nexus = NexusModel.load(bundle)
    with pytest.raises(BundleError, match="not in this bundle"):
        nexus.generate("x", capability="poetry")
    with pytest.raises(ValueError, match="context"):
        nexus.generate("x", max_new_tokens=10_000)


def test_uncensored_needs_the_build_opt_in_and_the_call_flag(bundle):
    rewrite_manifest(bundle, capabilities=["reasoning", "science", "uncensored"])
    write_manifest(bundle)
    with pytest.raises(SafetyError, match="opt-in"):
        NexusModel.load(bundle)
    rewrite_manifest(bundle, safety={"uncensored": True})
    write_manifest(bundle)
    nexus = NexusModel.load(bundle)
    with pytest.raises(SafetyError, match="enable_uncensored=True"):
        nexus.generate("anything", capability="uncensored")
    assert isinstance(nexus.generate("anything", capability="uncensored", enable_uncensored=True), str)
    assert nexus.route("anything") != "uncensored"


def test_int8_bundle_loads_and_stays_close(bundle):
    float_logits = _first_logits(NexusModel.load(bundle))
    quantize_int8(bundle)
    write_manifest(bundle)
    quantized = NexusModel.load(bundle)
    assert quantized.decoder.model.layers[0].mlp.up_proj.weight.dtype == torch.float32
    int8_logits = _first_logits(quantized)
    assert (int8_logits - float_logits).abs().max() < 0.05 * float_logits.abs().max()


def _first_logits(nexus):
    ids = torch.tensor([nexus.tokenizer.encode("max(3,4)=").ids])
    nexus.decoder.set_active_adapter("science")
    return nexus.decoder(ids)


def test_loading_never_unpickles(bundle, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a pickle was loaded")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    NexusModel.load(bundle).generate("max(1,2)=")


def test_the_bundle_runs_where_nexa_and_transformers_cannot_be_imported(bundle):
    script = textwrap.dedent(f"""
        import importlib.abc, json, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in ("nexa", "transformers"):
                    raise ImportError(name + " is blocked")
        sys.meta_path.insert(0, Block())
        from nexus import NexusModel
        model = NexusModel.load({str(bundle)!r})
        print(json.dumps({{"out": model.generate("max(2,5)="), "route": model.route("4 km in m?"),
                          "leaked": sorted(m for m in sys.modules if m.split(".")[0] in ("nexa", "transformers"))}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["leaked"] == [] and result["route"] == "science" and isinstance(result["out"], str)

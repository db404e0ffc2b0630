"""The runtime's SSM and DEQ decoders compute what the training models compute, padded or step by step."""

import torch
from transformers import MambaConfig, MambaForCausalLM

from nexa.models.deq import build_deq
from nexus.deq import DEQDecoder
from nexus.ssm import MambaDecoder, MambaSpec

torch.set_num_threads(1)


def _mamba_pair():
    torch.manual_seed(42)
    hf = MambaForCausalLM(MambaConfig(vocab_size=40, hidden_size=32, state_size=8, num_hidden_layers=2, expand=2,
                                      use_mambapy=True)).eval()
    runtime = MambaDecoder(MambaSpec.from_json(hf.config.to_dict()))
    runtime.load_state_dict(hf.state_dict())
    return hf, runtime.eval()


def test_ssm_logits_match_hf_mamba_over_several_scan_chunks():
    hf, runtime = _mamba_pair()
    ids = torch.randint(3, 40, (2, 300))  # > 2 chunks of the chunked scan
    with torch.no_grad():
        reference = hf(ids).logits
    assert torch.allclose(runtime(ids), reference, atol=1e-4)


def test_ssm_left_padding_and_recurrent_steps_reproduce_the_full_forward():
    hf, runtime = _mamba_pair()
    ids = torch.randint(3, 40, (2, 12))
    with torch.no_grad():
        reference = hf(ids).logits
    cache = runtime.new_cache()
    padded = torch.cat([torch.zeros(2, 3, dtype=torch.long), ids[:, :8]], dim=1)
    mask = torch.cat([torch.zeros(2, 3), torch.ones(2, 8)], dim=1).bool()
    prefill = runtime(padded, mask, cache)[:, -1]
    assert torch.allclose(prefill, reference[:, 7], atol=1e-4)
    for position in range(8, 12):
        step = runtime(ids[:, position:position + 1], torch.ones(2, 1, dtype=torch.bool), cache)[:, -1]
        assert torch.allclose(step, reference[:, position], atol=1e-4)


def test_deq_runtime_matches_the_training_model_and_records_solver_stats():
    torch.manual_seed(42)
    model = build_deq(40, hidden_size=32, intermediate_size=64, num_attention_heads=2).eval()
    runtime = DEQDecoder(model.config.spec())
    runtime.load_state_dict(model.state_dict(), strict=False)
    ids = torch.randint(3, 40, (2, 10))
    with torch.no_grad():
        reference = model(input_ids=ids).logits
    cache = runtime.new_cache()
    first = runtime(ids[:, :9], None, cache)
    last = runtime(ids[:, 9:], None, cache)[:, -1]
    assert torch.allclose(first, reference[:, :9], atol=1e-3) and torch.allclose(last, reference[:, 9], atol=1e-3)
    assert len(cache.stats) == 2 and all(s.iterations >= 1 and s.residual < 0.01 for s in cache.stats)

"""The plain-torch decoder must compute what transformers' LlamaForCausalLM computes."""

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from nexus.llama import KVCache, LlamaDecoder, LlamaSpec


def _pair(tie: bool, kv_heads: int):
    torch.manual_seed(42)
    config = LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=72, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=kv_heads, max_position_embeddings=64, tie_word_embeddings=tie,
                         rope_theta=5000.0, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    hf = LlamaForCausalLM(config).eval()
    values = config.to_dict()
    spec = LlamaSpec.from_json({**{k: values.get(k) for k in LlamaSpec.__dataclass_fields__}, "head_dim": 8,
                                "rope_theta": 5000.0})
    ours = LlamaDecoder(spec)
    state = {k: v for k, v in hf.state_dict().items() if not (tie and k == "lm_head.weight")}
    result = ours.load_state_dict(state, strict=False)
    assert result.unexpected_keys == [] and set(result.missing_keys) <= {"lm_head.weight"}
    if tie:
        ours.lm_head.weight = ours.model.embed_tokens.weight
    return hf, ours


def test_logits_match_transformers_with_gqa_untied_head_and_rope_theta():
    for tie, kv in [(True, 4), (False, 2)]:
        hf, ours = _pair(tie, kv)
        ids = torch.randint(3, 40, (3, 12), generator=torch.Generator().manual_seed(42))
        with torch.no_grad():
            expected = hf(ids).logits
        assert torch.allclose(ours(ids), expected, atol=1e-5), (tie, kv)


def test_kv_cache_and_left_padding_change_nothing():
    hf, ours = _pair(True, 2)
    ids = torch.randint(3, 40, (2, 10), generator=torch.Generator().manual_seed(42))
    full = ours(ids)
    cache = KVCache(2)
    stepwise = torch.cat([ours(ids[:, :7], None, cache), ours(ids[:, 7:8], None, cache), ours(ids[:, 8:], None, cache)], 1)
    assert torch.allclose(stepwise, full, atol=1e-5)
    padded = torch.cat([torch.zeros(1, 4, dtype=torch.long), ids[:1, :6]], 1)
    mask = torch.tensor([[0] * 4 + [1] * 6], dtype=torch.bool)
    assert torch.allclose(ours(padded, mask)[0, 4:], ours(ids[:1, :6])[0], atol=1e-5)


def test_a_lora_delta_equals_merging_it_into_the_weight():
    _, ours = _pair(True, 4)
    ids = torch.randint(3, 40, (1, 8), generator=torch.Generator().manual_seed(42))
    module = ours.model.layers[1].mlp.up_proj
    lora_a, lora_b = torch.randn(3, 32), torch.randn(72, 3)
    module.add_adapter("x", lora_a, lora_b, scaling=2.0)
    ours.set_active_adapter("x")
    with_adapter = ours(ids)
    ours.set_active_adapter(None)
    assert not torch.allclose(with_adapter, ours(ids), atol=1e-4)
    module.weight.data += 2.0 * lora_b @ lora_a
    assert torch.allclose(with_adapter, ours(ids), atol=1e-4)

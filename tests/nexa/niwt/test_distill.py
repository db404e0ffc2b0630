import pytest
import torch
from transformers import LlamaForCausalLM

from nexa.niwt.distill import (AnchoredDistiller, CapabilityAnchors, DistillConfig, attach_adapters, backbone_state,
                               export_adapters, set_trainable)
from nexa.niwt.profile import encode_pairs

PLAN = {"reasoning": {"rank": 4, "alpha": 8.0, "target_modules": ["q_proj", "v_proj", "up_proj", "down_proj"]},
        "science": {"rank": 2, "alpha": 4.0, "target_modules": ["q_proj", "v_proj", "up_proj", "down_proj"]}}


def _student(teacher):
    student = LlamaForCausalLM(teacher.config)
    student.load_state_dict(teacher.state_dict())
    return student


def _distiller(teacher, tokenizer, rows, **config):
    model = attach_adapters(_student(teacher), PLAN)
    train = {c: [(r["prompt"], r["answer"]) for r in rows if r["capability"] == c] for c in PLAN}
    hidden = teacher.config.hidden_size
    anchors = {}
    for c, pairs in train.items():
        basis = torch.eye(hidden)[:4]
        layers = {1: (basis, torch.zeros(hidden), torch.ones(4), torch.zeros(len(pairs), 4))}
        heads = {1: ([0], torch.full((len(pairs), 1), 1.0))}
        anchors[c] = CapabilityAnchors(pairs, layers, heads, pairs[:10])
    return AnchoredDistiller(model, tokenizer, train, anchors, torch.eye(hidden), DistillConfig(**config), seed=42)


def test_adapters_export_to_the_bundle_format_and_run_identically_in_nexus(teacher, tokenizer, rows, tmp_path):
    from nexa.bundle.build import write_backbone, write_manifest, write_tokenizer
    from nexa.train.tokenizer import save_char_tokenizer
    from nexus import NexusModel

    distiller = _distiller(teacher, tokenizer, rows, phase1_steps=4, batch_size=4, anchor_batch=4, check_every=1000)
    for module in distiller.model.modules():  # make the adapters non-zero so the comparison means something
        if hasattr(module, "lora_B"):
            for layer in module.lora_B.values():
                torch.nn.init.normal_(layer.weight, std=0.2)
    model_dir = tmp_path / "student"
    clean = LlamaForCausalLM(teacher.config)
    clean.load_state_dict(backbone_state(distiller.model), strict=False)
    clean.tie_weights()
    clean.save_pretrained(model_dir)
    written = export_adapters(distiller.model, PLAN, tmp_path / "adapters")
    assert written == {"reasoning": "reasoning.safetensors", "science": "science.safetensors"}
    bundle = tmp_path / "bundle"
    write_backbone(model_dir, bundle)
    save_char_tokenizer(tokenizer, tmp_path)
    write_tokenizer(tmp_path / "tokenizer.json", bundle)
    (bundle / "adapters").mkdir()
    for cap, name in written.items():
        (bundle / "adapters" / name).write_bytes((tmp_path / "adapters" / name).read_bytes())
    write_manifest(bundle, name="t", version="0", capabilities=sorted(PLAN), safety={"uncensored": False},
                   adapters={c: f"adapters/{n}" for c, n in written.items()}, generation={"max_new_tokens": 4})
    runtime = NexusModel.load(bundle)
    ids = torch.tensor([tokenizer.encode(rows[0]["prompt"]).ids])
    distiller.model.eval()
    for capability in sorted(PLAN):
        distiller.model.set_adapter(capability)
        runtime.decoder.set_active_adapter(capability)
        with torch.no_grad():
            expected = distiller.model(input_ids=ids).logits
        assert torch.allclose(runtime.decoder(ids), expected, atol=1e-4), capability
    runtime.decoder.set_active_adapter(None)
    assert not torch.allclose(runtime.decoder(ids), expected, atol=1e-3)


def test_phase1_trains_only_the_adapters_and_lowers_the_loss(teacher, tokenizer, rows):
    distiller = _distiller(teacher, tokenizer, rows, phase1_steps=30, batch_size=8, anchor_batch=4, check_every=1000,
                           adapter_learning_rate=1e-2, alpha=0.0, beta=0.0)
    before = {k: v.clone() for k, v in backbone_state(distiller.model).items()}
    batch = encode_pairs(tokenizer, distiller.rows["reasoning"][:32], 2, 0)

    def loss():
        distiller.model.set_adapter("reasoning")
        with torch.no_grad():
            logits = distiller.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        return float(torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), batch.labels[:, 1:].flatten(), ignore_index=-100))

    start = loss()
    distiller.run_phase(30, backbone=False)
    assert loss() < start
    after = backbone_state(distiller.model)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_slipping_capability_gets_a_stronger_activation_anchor(teacher, tokenizer, rows):
    distiller = _distiller(teacher, tokenizer, rows, alpha=0.1, recovery_factor=2.0, max_new_tokens=2)
    distiller.state.best_agreement = {"reasoning": 1.0, "science": 0.0}  # a random student is far below 1.0
    distiller.recovery_check(["reasoning", "science"])
    assert distiller.state.alpha["reasoning"] == pytest.approx(0.2)
    assert distiller.state.alpha["science"] == pytest.approx(0.1)
    assert distiller.state.recoveries[0]["capability"] == "reasoning"


def test_anchor_terms_are_part_of_the_loss(teacher, tokenizer, rows):
    with_anchor = _distiller(teacher, tokenizer, rows, alpha=1.0, beta=1.0)
    without = _distiller(teacher, tokenizer, rows, alpha=0.0, beta=0.0)
    assert with_anchor._backward("science", 1) > without._backward("science", 1)


def test_micro_batches_give_the_whole_batchs_loss_and_gradient(teacher, tokenizer, rows):
    """Gradient accumulation over slices of 3 rows (uneven last slice, anchors on) equals one forward over 8 rows."""
    grads = []
    for micro in (None, 3):
        torch.manual_seed(42)  # the same LoRA A matrices in both students
        distiller = _distiller(teacher, tokenizer, rows, batch_size=8, micro_batch=micro, alpha=1.0, beta=1.0)
        set_trainable(distiller.model, "science", backbone=True)
        distiller.model.train()
        loss = distiller._backward("science", 1)
        grads.append((loss, {n: p.grad.clone() for n, p in distiller.model.named_parameters() if p.grad is not None}))
    (whole, whole_grads), (sliced, sliced_grads) = grads
    assert sliced == pytest.approx(whole, rel=1e-5)
    assert whole_grads.keys() == sliced_grads.keys() and len(whole_grads) > 10
    for name, grad in whole_grads.items():
        assert torch.allclose(sliced_grads[name], grad, atol=1e-6, rtol=1e-4), name


def test_retry_retrains_only_the_failing_capabilitys_adapter(teacher, tokenizer, rows):
    distiller = _distiller(teacher, tokenizer, rows, adapter_learning_rate=1e-2, alpha=0.0, beta=0.0, check_every=1000)
    before = {k: v.clone() for k, v in distiller.model.state_dict().items()}
    distiller.run_phase(4, backbone=False, capabilities=["science"])
    after = distiller.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("lora_" in k and ".science." in k for k in changed)


@pytest.mark.parametrize("mode, trained", [("one", {"reasoning"}), ("all", {"reasoning", "science"})])
def test_one_step_trains_one_or_every_capabilitys_adapter(teacher, tokenizer, rows, mode, trained):
    distiller = _distiller(teacher, tokenizer, rows, step_capabilities=mode, batch_size=4, anchor_batch=4,
                           adapter_learning_rate=1e-2, alpha=0.0, beta=0.0, check_every=1000)
    before = {k: v.clone() for k, v in distiller.model.state_dict().items()}
    distiller.run_phase(1, backbone=False)
    after = distiller.model.state_dict()
    changed = {cap for cap in PLAN for k in before if f".{cap}." in k and not torch.equal(before[k], after[k])}
    assert changed == trained
    assert distiller.state.step == 1

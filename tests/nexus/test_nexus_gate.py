"""The uncertainty gate (calibration, abstention, escalation) and energy refinement on a real tiny bundle."""

import pytest
import torch
from local_openai import echoing_completions

from nexa.bundle.build import write_manifest
from nexa.models.gate import calibrate_threshold, gate_manifest_entry, selective_error
from nexus import NexusModel
from nexus.gate import UncertaintyGate
from nexus.refine import refine, sequence_log_prob

torch.set_num_threads(1)


def test_threshold_keeps_selective_error_below_alpha_and_refuses_when_it_cannot():
    confidences = [i / 100 for i in range(100)]
    correct = [i >= 30 or i % 2 == 0 for i in range(100)]  # errors only below 0.30
    threshold = calibrate_threshold(confidences, correct, alpha=0.1, delta=0.1)
    error, coverage = selective_error(confidences, correct, threshold)
    assert error <= 0.1 and coverage >= 0.6
    assert calibrate_threshold(confidences, [False] * 100, alpha=0.1) == float("inf")  # never certified: abstain always


def test_a_gated_bundle_flags_abstentions_and_escalates_to_the_fallback(bundle):
    model = NexusModel.load(bundle)
    plain = model.complete_batch(["max(3,9)=", "7 km in m?"], max_new_tokens=4)
    assert all(g.confidence is None and not g.abstained for g in plain)  # no gate in the manifest
    write_manifest(bundle, uncertainty_gate=gate_manifest_entry(1.0, 2.0, 0.1, 0.1))  # threshold above any probability
    gated = NexusModel.load(bundle).complete_batch(["max(3,9)=", "7 km in m?"], max_new_tokens=4)
    assert [g.text for g in gated] == [g.text for g in plain]  # the student's guess is kept, only flagged
    assert all(g.abstained and 0 < g.confidence <= 1 and not g.escalated for g in gated)

    with echoing_completions() as fallback_url:
        escalating = NexusModel.load(bundle)
        escalating.gate = UncertaintyGate(1.0, 2.0, 0.1, fallback_url)
        answer = escalating.complete_batch(["max(3,9)="], max_new_tokens=4)[0]
    assert answer.text == "fallback:max(3,9)=" and answer.escalated and answer.abstained


def test_energy_refinement_picks_the_lowest_energy_candidate(bundle):
    model = NexusModel.load(bundle)
    greedy = model.generate("max(3,9)=", max_new_tokens=4)
    best, scored = refine(model, "max(3,9)=", n=6, temperature=1.5, max_new_tokens=4)
    assert scored[0].text == greedy and best.energy == min(c.energy for c in scored)
    assert best.log_prob == pytest.approx(sequence_log_prob(model, "max(3,9)=", best.text))
    # A verifier that rejects the greedy answer moves the choice to another candidate when there is one.
    others = [c for c in scored if c.text != greedy]
    if others:
        chosen, _ = refine(model, "max(3,9)=", n=6, temperature=1.5, max_new_tokens=4, weight=1e6,
                           penalty=lambda prompt, text: float(text == greedy))
        assert chosen.text != greedy

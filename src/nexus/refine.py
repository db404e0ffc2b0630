"""Energy refinement: sample N candidates and keep the one of lowest energy.

E(y | x) = -log p(y | x) + w · penalty(x, y), where log p is the student's own (temperature 1, EOS
included) and ``penalty`` is any verifier or judge that returns 0 for an acceptable answer and more for
a worse one. The greedy answer is always a candidate, so refinement can only replace it with one the
energy prefers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Penalty = Callable[[str, str], float]


@dataclass(frozen=True)
class Candidate:
    text: str
    log_prob: float
    penalty: float
    energy: float


def sequence_log_prob(model, prompt: str, text: str, capability: str | None = None) -> float:
    """log p(text + EOS | prompt) under the bundle's decoder (teacher-forced, one forward)."""
    prompt_ids = model.tokenizer.encode(prompt).ids
    answer_ids = model.tokenizer.encode(text, add_special_tokens=False).ids + [model.spec.eos_token_id]
    ids = torch.tensor([prompt_ids + answer_ids], device=model.device)
    model.decoder.set_active_adapter(capability)
    logits = model.decoder(ids, torch.ones_like(ids, dtype=torch.bool), None)[0].float()
    log_probs = torch.log_softmax(logits[len(prompt_ids) - 1:-1], dim=-1)
    return float(log_probs.gather(1, torch.tensor(answer_ids, device=model.device)[:, None]).sum())


def refine(model, prompt: str, n: int = 8, temperature: float = 1.0, penalty: Penalty | None = None,
           weight: float = 1.0, max_new_tokens: int | None = None, seed: int = 42,
           capability: str | None = None) -> tuple[Candidate, list[Candidate]]:
    """The lowest-energy of the greedy answer and ``n - 1`` samples, and every distinct candidate scored."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    chosen = model._resolve(prompt, capability, False)
    greedy = model.generate(prompt, capability=chosen, max_new_tokens=max_new_tokens)
    texts = [greedy]
    if n > 1:
        texts += model.generate_batch([prompt] * (n - 1), capability=chosen, max_new_tokens=max_new_tokens,
                                      temperature=temperature, seed=seed)
    scored = []
    for text in dict.fromkeys(texts):  # distinct, greedy first
        log_prob = sequence_log_prob(model, prompt, text, chosen)
        cost = float(penalty(prompt, text)) if penalty is not None else 0.0
        scored.append(Candidate(text, log_prob, cost, -log_prob + weight * cost))
    return min(scored, key=lambda c: c.energy), scored

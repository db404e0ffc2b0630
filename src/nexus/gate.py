"""The uncertainty gate: a completion's calibrated confidence, abstention below a threshold, and escalation.

Confidence is the lowest temperature-scaled max-probability over the tokens the model produced (its
least sure step decides); the temperature and threshold are fitted in the lab on a calibration split
(``nexa.models.gate``) so that the error rate among answered prompts stays at most ``alpha``, and travel
in the bundle's manifest as ``uncertainty_gate``. An abstained completion keeps the student's text and is
flagged; when a fallback endpoint is configured (an OpenAI-style ``/v1/completions`` URL), its answer
replaces the text and the completion is marked ``escalated``.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass

import torch

from nexus.errors import BundleError


@dataclass(frozen=True)
class UncertaintyGate:
    temperature: float = 1.0
    threshold: float = 0.0
    alpha: float | None = None
    fallback_url: str | None = None

    @classmethod
    def from_manifest(cls, manifest: dict) -> UncertaintyGate | None:
        raw = manifest.get("uncertainty_gate")
        if raw is None:
            return None
        try:
            gate = cls(temperature=float(raw["temperature"]), threshold=float(raw["threshold"]),
                       alpha=raw.get("alpha"), fallback_url=raw.get("fallback_url"))
        except (KeyError, TypeError, ValueError) as error:
            raise BundleError(f"manifest.json: uncertainty_gate needs numeric temperature and threshold: {error}") from error
        if gate.temperature <= 0:
            raise BundleError(f"manifest.json: uncertainty_gate.temperature must be positive, got {gate.temperature}")
        return gate

    def abstains(self, confidence: float) -> bool:
        return confidence < self.threshold


def step_confidence(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Max softmax probability of each row of ``logits`` [batch, vocab] at ``temperature``."""
    return torch.softmax(logits.float() / temperature, dim=-1).max(dim=-1).values


def sequence_confidence(steps: list[torch.Tensor], row: int, produced: int) -> float:
    """The least confident of the first ``produced`` steps of ``row`` (the EOS step counts when it was reached)."""
    values = [float(step[row]) for step in steps[:max(produced, 1)]]
    return min(values) if values else 1.0


def escalate(url: str, prompt: str, max_tokens: int, timeout: float = 30.0) -> str:
    """The fallback endpoint's completion of ``prompt`` (OpenAI ``/v1/completions`` request and response shape)."""
    body = json.dumps({"model": "fallback", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.loads(response.read().decode("utf-8"))
    try:
        return str(answer["choices"][0]["text"])
    except (KeyError, IndexError, TypeError) as error:
        raise BundleError(f"fallback endpoint {url} answered without choices[0].text: {error}") from error

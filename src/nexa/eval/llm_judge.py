"""LLM-as-judge through any OpenAI-compatible ``/chat/completions`` endpoint, with rubrics as files.

A rubric (``rubrics/<id>.yaml``) holds the system prompt and the pointwise and pairwise templates.
Every verdict records ``judge_model_id`` (the model asked) and ``judge_prompt_hash`` — the SHA-256 of
the exact template text sent (system prompt + template, before the item is filled in), so editing a
rubric changes the hash of every score it gives. Pairwise judging asks twice with the answers'
positions swapped and only keeps a winner both orders agree on, which cancels a judge's order bias.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nexa.ledger.hashing import sha256_json

RUBRIC_SCHEMA_VERSION = 1
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


class RubricError(ValueError):
    """A rubric file that cannot be used; the message names the file and the field."""


class JudgeError(RuntimeError):
    """The judge endpoint failed or answered something that is not a verdict; names the endpoint."""


class Rubric(BaseModel):
    """A versioned rubric file: what the judge is told and how it must answer."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = RUBRIC_SCHEMA_VERSION
    id: str
    version: int = Field(ge=1)
    description: str = ""
    scale_min: int = 1
    scale_max: int = 5
    system: str
    pointwise: str = Field(description="Template with {prompt}, {output}, {reference}; the judge replies {\"score\": n}.")
    pairwise: str = Field(description="Template with {prompt}, {output_a}, {output_b}; the judge replies {\"winner\": \"A\"|\"B\"|\"tie\"}.")

    def prompt_hash(self, mode: Literal["pointwise", "pairwise"]) -> str:
        return sha256_json({"system": self.system, "template": getattr(self, mode)})


def load_rubric(path: str | Path) -> Rubric:
    path = Path(path)
    if not path.exists():
        known = sorted(p.name for p in path.parent.glob("*.yaml")) if path.parent.exists() else []
        raise RubricError(f"no rubric file {path}; rubrics there: {known or 'none'}")
    try:
        return Rubric.model_validate(yaml.safe_load(path.read_text()))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise RubricError(f"{path}: {problems}") from exc


@dataclass
class Verdict:
    score: float
    reason: str
    judge_model_id: str
    judge_prompt_hash: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0  # what the judge call cost at the judge model's price


@dataclass
class PairwiseVerdict:
    winner: Literal["a", "b", "tie"]
    first_order: str  # the judge's pick with a shown as "A"
    swapped_order: str  # its pick with b shown as "A", mapped back to "a" / "b" / "tie"
    consistent: bool
    judge_model_id: str
    judge_prompt_hash: str


class LLMJudge:
    """One judge model behind one endpoint, scoring with one rubric at temperature 0."""

    def __init__(self, base_url: str, model: str, rubric: Rubric, api_key: str | None = None, timeout_s: float = 60.0,
                 price=None):
        """``price`` (a :class:`nexa.infra.cost.ModelPrice`) turns each verdict's billed tokens into ``cost_usd``;
        None means the caller decided the judge is free (self-hosted)."""
        self.base_url, self.model, self.rubric, self.price = base_url.rstrip("/"), model, rubric, price
        key = api_key or os.environ.get("NEXA_JUDGE_API_KEY") or os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s), headers=headers)

    @property
    def judge_model_id(self) -> str:
        return self.model

    def close(self) -> None:
        self._client.close()

    def score(self, prompt: str, output: str, reference: str = "") -> Verdict:
        """A pointwise score on the rubric's scale."""
        text, usage = self._ask(self.rubric.pointwise.format(prompt=prompt, output=output, reference=reference))
        value = _field(self._parse(text), "score", (int, float))
        if not self.rubric.scale_min <= value <= self.rubric.scale_max:
            raise JudgeError(f"judge {self.model} at {self.base_url} gave score {value} outside "
                             f"{self.rubric.scale_min}..{self.rubric.scale_max} (rubric {self.rubric.id}@v{self.rubric.version})")
        cost = self.price.cost(*usage) if self.price is not None else 0.0
        return Verdict(float(value), str(self._parse(text).get("reason", "")), self.judge_model_id,
                       self.rubric.prompt_hash("pointwise"), *usage, cost_usd=cost)

    def compare(self, prompt: str, output_a: str, output_b: str) -> PairwiseVerdict:
        """Ask in both orders; a winner is kept only when both orders name it, else it is a tie."""
        first = self._pick(prompt, output_a, output_b)
        second = {"A": "b", "B": "a", "tie": "tie"}[self._pick(prompt, output_b, output_a)]
        first = {"A": "a", "B": "b", "tie": "tie"}[first]
        winner = first if first == second else "tie"
        return PairwiseVerdict(winner, first, second, first == second, self.judge_model_id, self.rubric.prompt_hash("pairwise"))

    def _pick(self, prompt: str, shown_a: str, shown_b: str) -> str:
        text, _ = self._ask(self.rubric.pairwise.format(prompt=prompt, output_a=shown_a, output_b=shown_b))
        winner = _field(self._parse(text), "winner", (str,))
        if winner not in ("A", "B", "tie"):
            raise JudgeError(f"judge {self.model} at {self.base_url} answered winner={winner!r}; expected 'A', 'B' or 'tie'")
        return winner

    def _ask(self, content: str) -> tuple[str, tuple[int, int]]:
        body = {"model": self.model, "temperature": 0, "messages": [
            {"role": "system", "content": self.rubric.system}, {"role": "user", "content": content}]}
        try:
            response = self._client.post(f"{self.base_url}/chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise JudgeError(f"judge endpoint {self.base_url} unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise JudgeError(f"judge endpoint {self.base_url} answered HTTP {response.status_code}: {response.text[:300]}")
        data = response.json()
        usage = data.get("usage") or {}
        return data["choices"][0]["message"]["content"], (usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))

    def _parse(self, text: str) -> dict:
        match = _JSON_OBJECT.search(text)
        try:
            return json.loads(match.group()) if match else {}
        except json.JSONDecodeError as exc:
            raise JudgeError(f"judge {self.model} replied with malformed JSON ({exc.msg}): {text[:200]!r}") from exc


def _field(payload: dict, name: str, types: tuple[type, ...]):
    if name not in payload or not isinstance(payload[name], types):
        raise JudgeError(f"judge reply {payload!r} lacks a {name!r} field of type {'/'.join(t.__name__ for t in types)}")
    return payload[name]

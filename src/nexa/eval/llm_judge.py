"""LLM-as-judge through any OpenAI-compatible ``/chat/completions`` endpoint, with rubrics as files.

A rubric (``rubrics/<id>.yaml``) holds the system prompt and the pointwise and pairwise templates.
Every verdict records ``judge_model_id`` (the model asked) and ``judge_prompt_hash`` — the SHA-256 of
the exact template text sent (system prompt + template, before the item is filled in), so editing a
rubric changes the hash of every score it gives. Calls go through the teachers layer's cache, prices and budget (see :class:`LLMJudge`). Pairwise judging asks twice with the answers'
positions swapped and only keeps a winner both orders agree on, which cancels a judge's order bias.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nexa.ledger.hashing import sha256_json

RUBRIC_SCHEMA_VERSION = 1
JUDGE_MAX_TOKENS = 256  # a verdict is a short JSON object
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


class JudgeBudgetError(JudgeError):
    """The judge's budget would be exceeded by the next call; nothing past it was sent."""


class LLMJudge:
    """One judge model behind one endpoint, scoring with one rubric at temperature 0.

    Every call goes through the teachers layer (:func:`nexa.teachers.answering.ask`), the way
    ``nexa distill materialize`` pays for answers: a verdict asked before is a cache hit in the lab's
    ``teacher-cache/`` and costs nothing, a new one is priced at the judge model's price, and
    ``budget_usd`` (for all calls of this judge together) stops it with :class:`JudgeBudgetError`.
    """

    def __init__(self, base_url: str, model: str, rubric: Rubric, lab, api_key: str | None = None,
                 timeout_s: float = 60.0, price=None, budget_usd: float | None = None, run_id: str | None = None,
                 retry=None):
        """``price`` (a :class:`nexa.infra.cost.ModelPrice`) turns each new verdict's billed tokens into ``cost_usd``;
        None means the caller decided the judge is free (self-hosted)."""
        from nexa.teachers.openai_api import OpenAITeacher

        self.base_url, self.model, self.rubric, self.price = base_url.rstrip("/"), model, rubric, price
        self.lab, self.budget_usd, self.run_id, self.retry = lab, budget_usd, run_id, retry
        self.spent_usd, self.cache_hits, self.calls = 0.0, 0, 0
        key = api_key or os.environ.get("NEXA_JUDGE_API_KEY") or os.environ.get("OPENAI_API_KEY")
        self._teacher = OpenAITeacher(self.base_url, model, api_key=key, api="chat", timeout_s=timeout_s)

    @property
    def judge_model_id(self) -> str:
        return self.model

    def close(self) -> None:
        self._teacher.close()

    def score(self, prompt: str, output: str, reference: str = "") -> Verdict:
        """A pointwise score on the rubric's scale."""
        return self.score_many([(prompt, output, reference)])[0]

    def score_many(self, items: list[tuple[str, str, str]]) -> list[Verdict]:
        """Pointwise scores of (prompt, output, reference) triples, asked together (cached ones are not asked)."""
        replies = self._ask_many([self.rubric.pointwise.format(prompt=p, output=o, reference=r) for p, o, r in items])
        return [self._verdict(text, usage, cost) for text, usage, cost in replies]

    def _verdict(self, text: str, usage: tuple[int, int], cost: float) -> Verdict:
        payload = self._parse(text)
        value = _field(payload, "score", (int, float))
        if not self.rubric.scale_min <= value <= self.rubric.scale_max:
            raise JudgeError(f"judge {self.model} at {self.base_url} gave score {value} outside "
                             f"{self.rubric.scale_min}..{self.rubric.scale_max} (rubric {self.rubric.id}@v{self.rubric.version})")
        return Verdict(float(value), str(payload.get("reason", "")), self.judge_model_id,
                       self.rubric.prompt_hash("pointwise"), *usage, cost_usd=cost)

    def compare(self, prompt: str, output_a: str, output_b: str) -> PairwiseVerdict:
        """Ask in both orders; a winner is kept only when both orders name it, else it is a tie."""
        first = self._pick(prompt, output_a, output_b)
        second = {"A": "b", "B": "a", "tie": "tie"}[self._pick(prompt, output_b, output_a)]
        first = {"A": "a", "B": "b", "tie": "tie"}[first]
        winner = first if first == second else "tie"
        return PairwiseVerdict(winner, first, second, first == second, self.judge_model_id, self.rubric.prompt_hash("pairwise"))

    def _pick(self, prompt: str, shown_a: str, shown_b: str) -> str:
        text, _, _ = self._ask_many([self.rubric.pairwise.format(prompt=prompt, output_a=shown_a, output_b=shown_b)])[0]
        winner = _field(self._parse(text), "winner", (str,))
        if winner not in ("A", "B", "tie"):
            raise JudgeError(f"judge {self.model} at {self.base_url} answered winner={winner!r}; expected 'A', 'B' or 'tie'")
        return winner

    def _ask_many(self, contents: list[str]) -> list[tuple[str, tuple[int, int], float]]:
        """(reply text, billed usage, what it cost now: 0 for a cache hit) per filled template."""
        from nexa.infra.cost import FREE, PriceTable
        from nexa.teachers.answering import ask
        from nexa.teachers.protocol import GenerationParams, TeacherRequest

        params = GenerationParams(max_tokens=JUDGE_MAX_TOKENS, temperature=0.0)
        requests = [TeacherRequest.from_prompt(c, params, system=self.rubric.system) for c in contents]
        price = self.price or FREE
        prices = PriceTable.builtin().with_model(self.model, price.input_per_mtok, price.output_per_mtok)
        left = None if self.budget_usd is None else max(self.budget_usd - self.spent_usd, 0.0)
        answers = ask(self.lab, self._teacher, requests, prices, self.run_id, lambda *a, **k: None, budget_usd=left,
                      retry=self.retry)
        self.spent_usd += answers.spent_usd
        self.cache_hits += answers.hits
        self.calls += answers.misses
        if answers.stopped == "budget":
            raise JudgeBudgetError(f"judge {self.model}: --budget-usd {self.budget_usd} would be exceeded "
                                   f"(spent ${self.spent_usd:.6f}); cached verdicts stay, rerun with a larger budget")
        if answers.failures:
            index, reason = next(iter(sorted(answers.failures.items())))
            raise JudgeError(f"judge endpoint {self.base_url} ({self.model}) unreachable or failing: {reason}")
        return [(e.response.text, (e.response.input_tokens, e.response.output_tokens),
                 e.cost_usd if i in answers.fresh else 0.0) for i, e in enumerate(answers.entries)]

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

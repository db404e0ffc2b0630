"""The teacher interface: a request (messages + generation parameters) in, a response with usage out.

Every implementation (an OpenAI-compatible API, a local HF model) fills the same
:class:`TeacherResponse`, so the cache, the cost accounting and the paired dataset never care
which kind of teacher answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from nexa.teachers.errors import PromptRejectedError


class GenerationParams(BaseModel):
    """How the teacher should generate; part of the cache key, so changing any field asks again."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int = Field(256, ge=1, description="Most new tokens per answer.")
    temperature: float = Field(0.0, ge=0, description="0 = greedy, which is what distillation targets want.")
    top_p: float = Field(1.0, gt=0, le=1)
    stop: tuple[str, ...] = Field((), description="Strings that end an answer.")
    seed: int | None = Field(None, description="Sampling seed, for servers that honour one.")
    top_logprobs: int = Field(0, ge=0, le=20, description="Top-k log-probabilities per output token (0 = none).")

    @classmethod
    def with_seed(cls, seed: int | None, **fields: Any) -> "GenerationParams":
        """Params that keep ``seed`` only when sampling (temperature > 0): a greedy answer does not depend on it, so
        it stays out of the cache key."""
        return cls(**fields, seed=seed if fields.get("temperature", 0.0) > 0 else None)


class TopLogprob(BaseModel):
    """One candidate token at one output position."""

    model_config = ConfigDict(extra="forbid")

    token: str
    logprob: float


class TokenLogprob(BaseModel):
    """The chosen token at one output position, its log-probability and the top-k alternatives."""

    model_config = ConfigDict(extra="forbid")

    token: str
    logprob: float | None = Field(description="None where the server gives none (e.g. an echoed first token).")
    top: list[TopLogprob] = Field(default_factory=list)


class TeacherResponse(BaseModel):
    """One answer with the usage it was billed for and how long it took."""

    model_config = ConfigDict(extra="forbid")

    text: str
    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    latency_ms: float = Field(ge=0)
    finish_reason: str | None = None
    logprobs: list[TokenLogprob] | None = None


@dataclass(frozen=True)
class TeacherRequest:
    """What to ask: chat messages (``role``/``content``) and the generation parameters."""

    messages: tuple[tuple[str, str], ...]
    params: GenerationParams

    @classmethod
    def from_prompt(cls, prompt: str, params: GenerationParams, system: str | None = None) -> "TeacherRequest":
        messages = ((("system", system),) if system else ()) + (("user", prompt),)
        return cls(messages=messages, params=params)

    def chat_messages(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]

    def prompt_text(self) -> str:
        """The raw prompt for completion-style teachers, which have no place for a system message."""
        if len(self.messages) != 1 or self.messages[0][0] != "user":
            roles = [role for role, _ in self.messages]
            raise PromptRejectedError(f"a completion-style teacher takes one user message, got roles {roles}; use the chat API")
        return self.messages[0][1]

    def key_material(self) -> dict[str, Any]:
        """What identifies this request in the cache (never a key or a URL credential)."""
        return {"messages": self.chat_messages(), "params": self.params.model_dump(mode="json")}


@runtime_checkable
class Teacher(Protocol):
    """Anything that answers prompts: an API endpoint or a local model."""

    @property
    def teacher_id(self) -> str:
        """A stable identity (endpoint + model, or the weights' hash): the cache is keyed by it."""

    @property
    def model_name(self) -> str:
        """The model name, used to look up its per-token price."""

    @property
    def bills_tokens(self) -> bool:
        """True when every call is billed per token (an API); False when the cost is compute time (local)."""

    @property
    def max_batch(self) -> int:
        """How many requests one :meth:`complete` call takes (1 for an API, many for a local model)."""

    def complete(self, requests: Sequence[TeacherRequest]) -> list[TeacherResponse]:
        """Answer ``requests`` in order; raise a :mod:`nexa.teachers.errors` error on failure."""

    def close(self) -> None:
        """Release connections or memory."""

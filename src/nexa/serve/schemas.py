"""The request bodies the server accepts, as strict pydantic models (wrong types are a 422, never a coercion).

Only the OpenAI fields this server implements are accepted. A few fields common clients always send
(``logprobs``, ``presence_penalty``, ``user``...) are accepted at their neutral value only, so a client
that asks for something the server cannot do hears so instead of getting a silently different answer.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_STOP_STRINGS = 4
MAX_PROMPTS = 64  # one nexus batch; more would hold the model lock for long


class StreamOptions(BaseModel):
    """OpenAI's ``stream_options``: ask for a last chunk carrying ``usage``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    include_usage: bool = False


class _GenerationFields(BaseModel):
    """Fields shared by both endpoints; ``capability`` and ``enable_uncensored`` are this server's extras."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(..., min_length=1, description='"<bundle>" (router picks) or "<bundle>:<capability>".')
    capability: Optional[str] = Field(None, min_length=1, description="Adapter to use; overrides routing.")
    max_tokens: Optional[int] = Field(None, ge=1, description="Most new tokens (default: the bundle's).")
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: Optional[int] = Field(None, ge=0, le=2**63 - 1)
    stop: Optional[Union[str, list[str]]] = None
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    enable_uncensored: bool = False
    # Accepted only at their neutral values (checked below).
    user: Optional[str] = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: Optional[Union[bool, int]] = None
    top_logprobs: Optional[int] = None

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value):
        if isinstance(value, list) and len(value) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings, got {len(value)}")
        return value

    @model_validator(mode="after")
    def _unsupported(self):
        if self.n != 1:
            raise ValueError("n > 1 is not supported by nexa serve; send n separate requests (with different seeds)")
        if self.presence_penalty or self.frequency_penalty:
            raise ValueError("presence_penalty and frequency_penalty are not supported by nexa serve (use 0)")
        if self.logprobs or self.top_logprobs:
            raise ValueError("logprobs are not supported by nexa serve (the nexus runtime does not return them)")
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed with stream: true")
        return self

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class CompletionRequest(_GenerationFields):
    """POST /v1/completions: one prompt, or a list of prompts answered in one batch (not when streaming)."""

    prompt: Union[str, list[str]]
    echo: Literal[False] = False

    @field_validator("prompt")
    @classmethod
    def _batch_size(cls, value):
        if isinstance(value, list) and not 1 <= len(value) <= MAX_PROMPTS:
            raise ValueError(f"a prompt list needs 1 to {MAX_PROMPTS} prompts, got {len(value)} (empty list or too many)")
        return value

    @model_validator(mode="after")
    def _stream_single(self):
        if self.stream and isinstance(self.prompt, list) and len(self.prompt) != 1:
            raise ValueError("stream: true takes a single prompt")
        return self

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class ChatMessage(BaseModel):
    """One chat message; content is plain text (no multi-part content)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str
    name: Optional[str] = None


class ChatRequest(_GenerationFields):
    """POST /v1/chat/completions. The whole conversation is rendered with the bundle's chat template; a bundle
    without one (the golden char-level completion models) is prompted with the last user message."""

    messages: list[ChatMessage] = Field(..., min_length=1)

    @model_validator(mode="after")
    def _has_user(self):
        if not any(m.role == "user" for m in self.messages):
            raise ValueError("messages needs at least one message with role 'user'")
        return self

    def prompt(self) -> str:
        return next(m.content for m in reversed(self.messages) if m.role == "user")

"""The request bodies the server accepts, as strict pydantic models (wrong types are a 400, never a coercion).

Fields OpenAI defines that change the answer are implemented (``logprobs``, ``echo``, ``n``, ``stop``, ``seed``,
``max_completion_tokens``...) or, when this server cannot honour them (``presence_penalty`` other than 0),
refused so a client hears so instead of getting a silently different answer. Fields OpenAI does not define
are accepted and ignored, as OpenAI does; the app logs their names (``ignored_fields``).
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_STOP_STRINGS = 4
MAX_PROMPTS = 64  # one nexus batch; more would hold the model lock for long
MAX_COMPLETION_LOGPROBS = 5  # OpenAI's limit for /v1/completions
MAX_CHAT_TOP_LOGPROBS = 20  # OpenAI's limit for /v1/chat/completions


class StreamOptions(BaseModel):
    """OpenAI's ``stream_options``: ask for a last chunk carrying ``usage``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    include_usage: bool = False


class _GenerationFields(BaseModel):
    """Fields shared by both endpoints; ``capability`` and ``enable_uncensored`` are this server's extras."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(..., min_length=1, description='"<bundle>" (router picks) or "<bundle>:<capability>".')
    capability: Optional[str] = Field(None, min_length=1, description="Adapter to use; overrides routing.")
    max_tokens: Optional[int] = Field(None, ge=0, description="Most new tokens (default: the bundle's); 0 only with echo.")
    max_completion_tokens: Optional[int] = Field(None, ge=0, description="OpenAI's newer name for max_tokens.")
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: Optional[int] = Field(None, ge=0, le=2**63 - 1)
    stop: Optional[Union[str, list[str]]] = None
    n: int = Field(1, ge=1, le=MAX_PROMPTS)
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    enable_uncensored: bool = False
    user: Optional[str] = None
    # Accepted only at their neutral values (checked below).
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value):
        if isinstance(value, list) and len(value) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings, got {len(value)}")
        return value

    @model_validator(mode="after")
    def _unsupported(self):
        if self.presence_penalty or self.frequency_penalty:
            raise ValueError("presence_penalty and frequency_penalty are not supported by nexa serve (use 0)")
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed with stream: true")
        if self.stream and self.n != 1:
            raise ValueError("stream: true takes n = 1")
        if None not in (self.max_tokens, self.max_completion_tokens) and self.max_tokens != self.max_completion_tokens:
            raise ValueError("max_tokens and max_completion_tokens disagree; give one")
        return self

    def wants_logprobs(self) -> bool:
        return False

    def top_count(self) -> int:
        """How many most likely tokens to report per position (0 = only the chosen token's logprob)."""
        return 0

    def token_limit(self) -> int | None:
        """``max_completion_tokens`` or ``max_tokens`` (None = the bundle's default)."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def ignored_fields(self) -> list[str]:
        """Fields OpenAI does not define for this endpoint: accepted and ignored, as OpenAI does."""
        return sorted(self.model_extra or {})

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class CompletionRequest(_GenerationFields):
    """POST /v1/completions: one prompt, or a list of prompts answered in one batch (not when streaming).

    A prompt is text or, as OpenAI allows, a list of token ids (used as given); ``echo`` returns the prompt
    before the completion and, with ``logprobs``, the prompt tokens' log-probabilities (``max_tokens: 0``
    scores the prompt only): what log-likelihood benchmarks need."""

    prompt: Union[str, list[str], list[int], list[list[int]]]
    echo: bool = False
    logprobs: Optional[int] = Field(None, ge=0, le=MAX_COMPLETION_LOGPROBS)

    @field_validator("prompt")
    @classmethod
    def _batch_size(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("a prompt list must not be empty")
        if isinstance(value, list) and not isinstance(value[0], int) and len(value) > MAX_PROMPTS:
            raise ValueError(f"a prompt list needs 1 to {MAX_PROMPTS} prompts, got {len(value)} (too many)")
        return value

    @model_validator(mode="after")
    def _stream_single(self):
        if self.stream and len(self.prompts()) != 1:
            raise ValueError("stream: true takes a single prompt")
        if self.stream and self.echo:
            raise ValueError("echo is not streamed by nexa serve; ask without stream: true")
        if len(self.prompts()) * self.n > MAX_PROMPTS:
            raise ValueError(f"prompts x n is at most {MAX_PROMPTS}, got {len(self.prompts())} x {self.n}")
        if self.token_limit() == 0 and not self.echo:
            raise ValueError("max_tokens: 0 is only allowed with echo: true (to score the prompt)")
        return self

    def prompts(self) -> list[str | list[int]]:
        """Each prompt: text, or token ids."""
        if isinstance(self.prompt, str) or (self.prompt and isinstance(self.prompt[0], int)):
            return [self.prompt]
        return list(self.prompt)

    def wants_logprobs(self) -> bool:
        return self.logprobs is not None

    def top_count(self) -> int:
        return self.logprobs or 0


class ChatMessage(BaseModel):
    """One chat message; content is plain text (no multi-part content)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str
    name: Optional[str] = None


class ChatRequest(_GenerationFields):
    """POST /v1/chat/completions. The whole conversation is rendered with the bundle's chat template; a bundle
    without one (the golden char-level completion models) is prompted with the last user message."""

    messages: list[ChatMessage] = Field(..., min_length=1)
    logprobs: bool = False
    top_logprobs: Optional[int] = Field(None, ge=0, le=MAX_CHAT_TOP_LOGPROBS)

    @model_validator(mode="after")
    def _has_user(self):
        if not any(m.role == "user" for m in self.messages):
            raise ValueError("messages needs at least one message with role 'user'")
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        if self.token_limit() == 0:
            raise ValueError("max_completion_tokens must be at least 1")
        return self

    def wants_logprobs(self) -> bool:
        return self.logprobs

    def top_count(self) -> int:
        return self.top_logprobs or 0

    def prompt(self) -> str:
        return next(m.content for m in reversed(self.messages) if m.role == "user")


class TokenizeRequest(BaseModel):
    """POST /tokenize (vLLM's shape): text to token ids with the bundle's tokenizer."""

    model_config = ConfigDict(extra="allow", strict=True)

    prompt: str
    add_special_tokens: bool = True


class DetokenizeRequest(BaseModel):
    """POST /detokenize (vLLM's shape): token ids back to text."""

    model_config = ConfigDict(extra="allow", strict=True)

    tokens: list[int]

"""The model behind the server: request checks before any work, and generation one request at a time.

A ``NexusModel`` is not thread-safe (one active adapter, one KV cache per call), so every generation
holds ``Engine.lock``; the HTTP layer runs these blocking calls in a threadpool so the event loop keeps
answering health checks and metrics while the model works.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from nexus import BundleError, NexusModel
from nexus.model import Generation, Prompt, TokenScore


class RequestError(Exception):
    """A request the server refuses; carries the HTTP status, an OpenAI error type and the offending field."""

    def __init__(self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind


@dataclass(frozen=True)
class Job:
    """A checked request: prompts, resolved capability (None = let the router pick) and sampling settings."""

    prompts: list[Prompt]
    capability: str | None
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: list[str]
    enable_uncensored: bool


class Engine:
    """One loaded bundle, its public model names and the lock that serialises generation."""

    def __init__(self, model: NexusModel, max_tokens_cap: int):
        self.model = model
        self.max_tokens_cap = max_tokens_cap
        self.name = str(model.manifest.get("name") or Path(model.path).name)
        self.lock = threading.Lock()

    @classmethod
    def load(cls, bundle: Path, max_tokens_cap: int, device: str = "cpu", fallback_url: str | None = None) -> Engine:
        """``fallback_url`` (an OpenAI-style /v1/completions URL) overrides the gate's: abstained prompts go there."""
        model = NexusModel.load(bundle, device=device)
        if fallback_url:
            if model.gate is None:
                raise BundleError(f"{bundle} has no uncertainty gate to escalate from; fit one with "
                                  "`nexa bundle calibrate-gate` first")
            model.gate = replace(model.gate, fallback_url=fallback_url)
        return cls(model, max_tokens_cap)

    # ---------------------------------------------------------------- names
    def model_ids(self) -> list[str]:
        """``<bundle>`` (routed) and one ``<bundle>:<capability>`` per capability, as /v1/models lists them."""
        return [self.name] + [f"{self.name}:{c}" for c in self.model.capabilities]

    def resolve_capability(self, model_name: str, capability: str | None) -> str | None:
        """The capability a request asks for through its model name or the ``capability`` field; 404 if unknown."""
        base, colon, from_name = model_name.partition(":")
        if base != self.name or (colon and not from_name):
            raise RequestError(404, f"model {model_name!r} is not served here; available models: {self.model_ids()}",
                               "model", "model_not_found")
        if from_name and capability and from_name != capability:
            raise RequestError(400, f"model {model_name!r} names capability {from_name!r} but the capability "
                               f"field says {capability!r}; give one or make them agree", "capability")
        chosen = capability or from_name or None
        if chosen is not None and chosen not in self.model.capabilities:
            raise RequestError(404, f"capability {chosen!r} is not in bundle {self.name!r}; known capabilities: "
                               f"{self.model.capabilities}", "capability" if capability else "model", "model_not_found")
        return chosen

    # --------------------------------------------------------------- checks
    def default_max_tokens(self) -> int:
        return int((self.model.manifest.get("generation") or {}).get("max_new_tokens", 16))

    def check_max_tokens(self, requested: int | None) -> int:
        value = self.default_max_tokens() if requested is None else requested
        if value > self.max_tokens_cap:
            raise RequestError(400, f"max_tokens {value} is above this server's cap of {self.max_tokens_cap} "
                               "(nexa serve --max-tokens-cap)", "max_tokens")
        return value

    def check_context(self, prompts: list[str], max_tokens: int) -> list[int]:
        """Prompt token counts; 400 when a prompt plus ``max_tokens`` does not fit the model's context, or a
        prompt of token ids holds an id outside the vocabulary."""
        context, vocab = self.model.spec.max_position_embeddings, self.model.spec.vocab_size
        counts = [len(ids) for ids in self.prompt_ids(prompts)]
        for index, (prompt, count) in enumerate(zip(prompts, counts)):
            where = "prompt" if len(prompts) == 1 else f"prompt[{index}]"
            if not isinstance(prompt, str) and not all(0 <= t < vocab for t in prompt):
                raise RequestError(400, f"{where} holds token ids outside the vocabulary [0, {vocab})", "prompt")
            if count == 0:
                raise RequestError(400, f"{where} holds no tokens", "prompt")
            if count + max_tokens > context:
                raise RequestError(400, f"{where} is {count} tokens and max_tokens is {max_tokens}: together they exceed "
                                   f"the model's context of {context} tokens; shorten the prompt or lower max_tokens",
                                   "prompt")
        return counts

    def prompt_ids(self, prompts: list[Prompt]) -> list[list[int]]:
        """The token ids the model reads for each prompt (text gets the tokenizer's special tokens)."""
        return [self.model.tokenizer.encode(p).ids if isinstance(p, str) else list(p) for p in prompts]

    def completion_ids(self, generation: Generation) -> list[int]:
        """The tokens that spell a completion's text, plus the end-of-sequence token when the model emitted it."""
        ids = self.model.tokenizer.encode(generation.text, add_special_tokens=False).ids
        return ids + [self.model.spec.eos_token_id] if generation.eos else ids

    def tokenizer_info(self) -> dict:
        """The special tokens and context, as vLLM's ``/tokenizer_info`` reports them."""
        spec, tokenizer = self.model.spec, self.model.tokenizer
        return {"tokenizer_class": "tokenizers.Tokenizer", "model_max_length": spec.max_position_embeddings,
                "bos_token": tokenizer.id_to_token(spec.bos_token_id), "eos_token": tokenizer.id_to_token(spec.eos_token_id),
                "pad_token": tokenizer.id_to_token(spec.pad_token_id)}

    def token_text(self, token_id: int) -> str:
        """A token as text; special tokens by name (they are not part of the returned text)."""
        return self.model.tokenizer.decode([token_id], skip_special_tokens=False) or \
            (self.model.tokenizer.id_to_token(token_id) or "")

    # ----------------------------------------------------------- generation
    def score(self, sequences: list[list[int]], job: Job, top: int) -> list[list[TokenScore]]:
        """Blocking: per-token log-probabilities of each sequence (prompt + completion), routed on the job's
        prompts exactly as its generation was."""
        with self.lock:
            return self.model.score(sequences, job.capability, top, job.enable_uncensored, routed_on=job.prompts)

    def complete(self, job: Job) -> list[Generation]:
        """Blocking; call it from a worker thread."""
        with self.lock:
            return self.model.complete_batch(job.prompts, job.capability, job.max_tokens, job.temperature, job.top_p,
                                             job.seed, job.enable_uncensored, job.stop or None)

    def prompt_only(self, job: Job, counts: list[int]) -> list[Generation]:
        """``max_tokens: 0`` (echo): nothing generated; each prompt with the capability that would answer it."""
        return [Generation("", job.capability if job.capability is not None else
                           self.model.route(p, job.enable_uncensored), count, 0, "length")
                for p, count in zip(job.prompts, counts)]

    def route(self, job: Job) -> str | None:
        """The capability that will answer ``job``'s first prompt (the router's pick when none was asked for)."""
        if job.capability is not None:
            return job.capability
        return self.model.route(job.prompts[0], job.enable_uncensored)

    def stream(self, job: Job, emit: Callable[[str, list], None], cancelled: threading.Event,
               logprobs: int | None = None) -> tuple[str, str]:
        """Blocking; feeds text pieces to ``emit`` as tokens come, honouring ``job.stop``, each with the
        :class:`~nexus.model.TokenScore` of the tokens it releases when ``logprobs`` is not None (what streamed
        ``logprobs`` report, with that many alternatives per token).

        Returns (full text, finish_reason). Text that could still grow into a stop string is held back
        until it is clear, so a streamed answer never shows a stop string or what follows it; a token's
        score goes out with the chunk that shows its first character (the end-of-sequence token's with the last).
        """
        with self.lock:
            pieces = self.model.stream_scored(job.prompts[0], job.capability, job.max_tokens, job.temperature, job.top_p,
                                              job.seed, job.enable_uncensored, logprobs or 0)
            return _stream_with_stops(pieces, job.stop, emit, cancelled, self.count_tokens, job.max_tokens,
                                      logprobs is not None)

    def count_tokens(self, text: str) -> int:
        """Tokens in a streamed completion (streaming yields text, so usage is counted by re-encoding it)."""
        return len(self.model.tokenizer.encode(text, add_special_tokens=False).ids)


def _stream_with_stops(pieces: Iterator[tuple[str, TokenScore]], stops: list[str], emit: Callable[[str, list], None],
                       cancelled: threading.Event, count_tokens: Callable[[str], int], max_tokens: int,
                       scored: bool = False) -> tuple[str, str]:
    text, sent = "", 0
    stops = [s for s in stops if s]
    pending: list[tuple[int, TokenScore]] = []  # (where the token's text starts, its score), not yet sent

    def release(upto: int, final: bool = False) -> list[TokenScore]:
        nonlocal pending
        out = [score for start, score in pending if final or start < upto]
        pending = [] if final else [(start, score) for start, score in pending if start >= upto]
        return out

    for piece, score in pieces:
        if cancelled.is_set():
            return text, "cancelled"
        pending.append((len(text), score))
        text += piece
        cut = _first_stop(text, stops)
        if cut is not None:
            if cut > sent:
                emit(text[sent:cut], release(cut))
            return text[:cut], "stop"
        safe = len(text) - _held_back(text, stops)
        if safe > sent:
            emit(text[sent:safe], release(safe))
            sent = safe
    if len(text) > sent or (scored and pending):  # the end-of-sequence token's score goes out on its own
        emit(text[sent:], release(len(text), final=True))
    return text, "length" if count_tokens(text) >= max_tokens else "stop"


def _first_stop(text: str, stops: list[str]) -> int | None:
    found = [text.index(s) for s in stops if s in text]
    return min(found) if found else None


def _held_back(text: str, stops: list[str]) -> int:
    """Length of the longest end of ``text`` that is the start of a stop string."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:size]):
                longest = max(longest, size)
                break
    return longest

"""Sending the uncached requests: bounded concurrency, retries, a budget that is never overshot.

The main thread hands batches to a pool of at most ``concurrency`` workers. Before each batch it
reserves a worst-case cost (prompt bytes + overhead as input tokens, ``max_tokens`` as output): a batch
whose reservation would take spent + reserved past the budget is not sent, so the budget holds even
with calls in flight. Each worker writes a batch's answers to the cache (one shard) the moment they arrive.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable

from nexa.infra.cost import ModelPrice
from nexa.teachers.cache import CacheEntry, ResponseCache
from nexa.teachers.errors import (
    CircuitOpenError,
    FatalTeacherError,
    PromptRejectedError,
    TeacherError,
    TransientTeacherError,
)
from nexa.teachers.faults import CircuitBreaker, RetryPolicy, TokenBucket, call_with_retries
from nexa.teachers.protocol import Teacher, TeacherRequest

# Tokens a chat template may add per message and per request; with one token per prompt byte at
# most, this makes the input estimate an upper bound for byte-level BPE and character vocabularies.
_TOKENS_PER_MESSAGE = 8
_TOKENS_PER_REQUEST = 8

Work = list[tuple[str, TeacherRequest]]


def worst_case_cost(request: TeacherRequest, price: ModelPrice) -> float:
    """An upper bound on what one request can cost, used to reserve budget before sending it."""
    prompt_bytes = sum(len(content.encode("utf-8")) for _, content in request.messages)
    input_tokens = prompt_bytes + _TOKENS_PER_MESSAGE * len(request.messages) + _TOKENS_PER_REQUEST
    return price.cost(input_tokens, request.params.max_tokens)


@dataclass
class DispatchOutcome:
    """What happened to the uncached requests."""

    answers: dict[str, CacheEntry] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # key -> why it has no answer
    rejected: set[str] = field(default_factory=set)  # keys whose prompt the teacher refused (content, not the call)
    calls: int = 0
    retries: int = 0
    spent_usd: float = 0.0
    stopped: str | None = None  # "budget", "circuit" or "fatal"
    error: TeacherError | None = None


@dataclass
class DispatchSettings:
    concurrency: int
    policy: RetryPolicy
    breaker_threshold: int
    rate_limit_rps: float | None = None
    budget_usd: float | None = None
    seed: int = 0


class Dispatcher:
    """Runs one materialization's misses through ``teacher``; see the module docstring for the budget rule."""

    def __init__(self, teacher: Teacher, cache: ResponseCache, price: ModelPrice, settings: DispatchSettings,
                 run_id: str | None, log: Callable[..., None], on_answer: Callable[[int, float], None]):
        self.teacher, self.cache, self.price, self.settings = teacher, cache, price, settings
        self.run_id, self._log, self._on_answer = run_id, log, on_answer
        self.breaker = CircuitBreaker(settings.breaker_threshold)
        self.bucket = TokenBucket(settings.rate_limit_rps) if settings.rate_limit_rps else None
        self.outcome = DispatchOutcome()
        self._lock = threading.Lock()
        self._log_lock = threading.Lock()
        self._reserved = 0.0

    def run(self, todo: Work) -> DispatchOutcome:
        """Send every ``(key, request)`` in ``todo`` unless the budget or the breaker stops it first."""
        size = max(1, self.teacher.max_batch)
        pending = deque(todo[i : i + size] for i in range(0, len(todo), size))
        in_flight: dict[Future, tuple[Work, float]] = {}
        with ThreadPoolExecutor(max_workers=self.settings.concurrency, thread_name_prefix="teacher") as pool:
            try:
                while pending or in_flight:
                    self._submit(pool, pending, in_flight)
                    if not in_flight:
                        break
                    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in done:
                        self._collect(future, *in_flight.pop(future))
            except BaseException:  # Ctrl-C: wake workers out of backoff; calls in flight finish and are cached
                self.breaker.trip("interrupted")
                raise
        reason = self._stop_reason()
        for batch in pending:
            for key, _ in batch:
                self.outcome.failures[key] = f"not sent: {reason}"
        return self.outcome

    def _submit(self, pool: ThreadPoolExecutor, pending: deque, in_flight: dict) -> None:
        while pending and len(in_flight) < self.settings.concurrency and self.outcome.stopped is None:
            batch = pending[0]
            estimate = sum(worst_case_cost(request, self.price) for _, request in batch)
            budget = self.settings.budget_usd
            if budget is not None and self.outcome.spent_usd + self._reserved + estimate > budget:
                self.outcome.stopped = "budget"
                self._record("budget_stop", spent_usd=self.outcome.spent_usd, reserved_usd=self._reserved,
                          next_request_up_to_usd=estimate, budget_usd=budget)
                return
            pending.popleft()
            self._reserved += estimate
            in_flight[pool.submit(self._work, batch)] = (batch, estimate)

    def _collect(self, future: Future, batch: Work, estimate: float) -> None:
        self._reserved -= estimate
        try:
            entries, cost = future.result()
        except (CircuitOpenError, FatalTeacherError) as exc:
            self._stop("fatal" if isinstance(exc, FatalTeacherError) else "circuit", exc, batch)
            return
        except (TransientTeacherError, PromptRejectedError) as exc:
            for key, _ in batch:
                self.outcome.failures[key] = str(exc)
                if isinstance(exc, PromptRejectedError):
                    self.outcome.rejected.add(key)
            self._record("prompt_failed", keys=[k for k, _ in batch], error=str(exc))
            if self.breaker.is_open:
                self._stop("circuit", CircuitOpenError(f"teacher calls stopped: {self.breaker.reason}"), [])
            return
        for (key, _), entry in zip(batch, entries):
            self.outcome.answers[key] = entry
        self.outcome.spent_usd += cost
        self._on_answer(len(entries), self.outcome.spent_usd)

    def _stop(self, reason: str, exc: TeacherError, batch: Work) -> None:
        for key, _ in batch:
            self.outcome.failures[key] = str(exc)
        if self.outcome.error is None or isinstance(exc, FatalTeacherError):
            self.outcome.stopped, self.outcome.error = reason, exc
        self.breaker.trip(str(exc))

    def _stop_reason(self) -> str:
        if self.outcome.stopped == "budget":
            return (f"--budget-usd {self.settings.budget_usd} would be exceeded "
                    f"(spent ${self.outcome.spent_usd:.6f}; a request is priced at its worst case before it is sent)")
        return str(self.outcome.error) if self.outcome.error else "stopped"

    # -- worker threads -------------------------------------------------------------------------
    def _work(self, batch: Work) -> tuple[list[CacheEntry], float]:
        """One batch through retries; answers go to the cache here, as they arrive, not at the end."""
        requests = [request for _, request in batch]
        rng = random.Random(f"{self.settings.seed}:{batch[0][0]}")
        responses = call_with_retries(lambda: self.teacher.complete(requests), self.settings.policy, self.breaker,
                                      self.bucket, on_attempt=lambda attempt, error: self._count(len(batch), attempt, error),
                                      rng=rng)
        fresh = [(request, response, self.price.cost(response.input_tokens, response.output_tokens))
                 for request, response in zip(requests, responses)]
        return self.cache.put_many(fresh, self.run_id), sum(price for _, _, price in fresh)

    def _count(self, n_requests: int, attempt: int, error: TeacherError | None) -> None:
        with self._lock:
            self.outcome.calls += n_requests
            self.outcome.retries += n_requests if attempt > 1 else 0
        if error is not None:
            self._record("call_failed", attempt=attempt, error=str(error),
                         status=getattr(error, "status", None), retry_after=getattr(error, "retry_after", None))

    def _record(self, event: str, **fields) -> None:
        """The run log is one file; worker threads and the main thread take turns writing to it."""
        with self._log_lock:
            self._log(event, **fields)

"""Surviving a flaky teacher: token-bucket rate limit, retries with backoff and jitter, a circuit breaker.

All three are shared by the worker threads of one materialization and are thread-safe. The breaker
counts consecutive failed *calls* (any kind), so a teacher that is down stops the run after a few
calls instead of after every prompt has used up its retries.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Callable, Mapping, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from nexa.teachers.errors import CircuitOpenError, PromptRejectedError, TeacherError, TransientTeacherError

T = TypeVar("T")


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (OpenAI) or ``Retry-After`` (seconds or an HTTP date).

    A header that is absent or unreadable gives ``None``: the server gave no usable hint, and
    the caller's own backoff applies.
    """
    millis = headers.get("retry-after-ms")
    if millis is not None and _is_number(millis):
        return max(0.0, float(millis) / 1000)
    value = headers.get("retry-after")
    if value is None:
        return None
    if _is_number(value):
        return max(0.0, float(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class TokenBucket:
    """At most ``rate`` calls per second on average, with bursts of up to ``burst`` calls."""

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if rate <= 0:
            raise ValueError(f"rate must be > 0 calls per second, got {rate}")
        self.rate, self.capacity = rate, max(1.0, burst if burst is not None else rate)
        self._tokens, self._clock, self._sleep = self.capacity, clock, sleep
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Block until a call may start."""
        while True:
            wait = self._try_take()
            if wait == 0:
                return
            self._sleep(wait)

    def _try_take(self) -> float:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self.rate


class RetryPolicy(BaseModel):
    """Exponential backoff with jitter; a server's ``Retry-After`` is a floor on the wait."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(6, ge=1, description="Calls per request, retries included.")
    base_delay_s: float = Field(0.5, ge=0, description="First retry delay; doubles each retry, with jitter.")
    max_delay_s: float = Field(30.0, ge=0, description="Cap on the exponential backoff.")
    max_retry_after_s: float = Field(120.0, ge=0, description="Longest Retry-After honoured; longer hints are cut to it.")

    def delay(self, failures: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after the ``failures``-th failed call: half fixed, half random, never below Retry-After."""
        backoff = min(self.max_delay_s, self.base_delay_s * 2 ** (failures - 1))
        jittered = backoff * (0.5 + 0.5 * rng.random())
        if retry_after is None:
            return jittered
        return max(jittered, min(retry_after, self.max_retry_after_s))


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failed calls, or at once on :meth:`trip`; a success resets the count."""

    def __init__(self, threshold: int):
        if threshold < 1:
            raise ValueError(f"circuit breaker threshold must be >= 1, got {threshold}")
        self.threshold = threshold
        self._failures = 0
        self._reason: str | None = None
        self._opened = threading.Event()
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._opened.is_set()

    @property
    def reason(self) -> str | None:
        """Why the breaker opened (``None`` while closed)."""
        return self._reason

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0

    def record_failure(self, error: str) -> None:
        with self._lock:
            self._failures += 1
            if self._failures >= self.threshold:
                self._open(f"{self._failures} consecutive calls failed (threshold {self.threshold}); last error: {error}")

    def trip(self, error: str) -> None:
        """Open now: a fatal error (bad key, unknown model) means every other call would fail too."""
        with self._lock:
            self._open(error)

    def _open(self, reason: str) -> None:
        if not self._opened.is_set():
            self._reason = reason
            self._opened.set()

    def check(self) -> None:
        """Raise :class:`CircuitOpenError` once the breaker is open."""
        if self.is_open:
            raise CircuitOpenError(f"teacher calls stopped: {self._reason}")

    def sleep(self, seconds: float) -> None:
        """Wait, but wake at once when the breaker opens so no thread sits out a long backoff for nothing."""
        self._opened.wait(seconds)


def call_with_retries(call: Callable[[], T], policy: RetryPolicy, breaker: CircuitBreaker,
                      bucket: TokenBucket | None = None,
                      on_attempt: Callable[[int, TeacherError | None], None] | None = None,
                      rng: random.Random | None = None) -> T:
    """Run ``call`` until it succeeds, retrying transient errors; every attempt is reported to ``on_attempt``.

    Raises the last :class:`TransientTeacherError` when attempts run out, a :class:`PromptRejectedError`
    at once, :class:`CircuitOpenError` when the breaker opens, and lets any other (fatal) error through.
    """
    rng = rng or random.Random()
    for attempt in itertools.count(1):
        breaker.check()
        if bucket is not None:
            bucket.acquire()
        try:
            result = call()
        except TeacherError as exc:
            if on_attempt:
                on_attempt(attempt, exc)
            if not isinstance(exc, (TransientTeacherError, PromptRejectedError)):
                raise  # fatal: the caller stops the run
            breaker.record_failure(str(exc))
            if isinstance(exc, PromptRejectedError) or attempt == policy.max_attempts:
                raise
            breaker.sleep(policy.delay(attempt, exc.retry_after, rng))
            continue
        breaker.record_success()
        if on_attempt:
            on_attempt(attempt, None)
        return result

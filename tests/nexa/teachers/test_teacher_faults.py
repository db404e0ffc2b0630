"""Rate limit, backoff, Retry-After and the circuit breaker, with a fake clock where time matters."""

from __future__ import annotations

import random
import threading
import time
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import pytest

from nexa.teachers.errors import CircuitOpenError, FatalTeacherError, PromptRejectedError, TransientTeacherError
from nexa.teachers.faults import CircuitBreaker, RetryPolicy, TokenBucket, call_with_retries, parse_retry_after


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_token_bucket_allows_the_burst_then_paces_to_the_rate():
    clock = FakeClock()
    bucket = TokenBucket(rate=4, burst=2, clock=clock, sleep=clock.sleep)
    for _ in range(10):
        bucket.acquire()
    assert clock.sleeps[:1] == [pytest.approx(0.25)]  # 2 free, then one every 1/4 s
    assert clock.now - 100.0 == pytest.approx(8 / 4)
    with pytest.raises(ValueError, match="rate must be > 0"):
        TokenBucket(rate=0)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": "-4"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_in_seconds_milliseconds_or_garbage(headers, expected):
    assert parse_retry_after(headers) == expected


def test_retry_after_as_an_http_date():
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    assert 28 <= parse_retry_after({"retry-after": format_datetime(when, usegmt=True)}) <= 30


def test_backoff_doubles_with_jitter_is_capped_and_never_undercuts_retry_after():
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=5.0, max_retry_after_s=60)
    rng = random.Random(0)
    delays = [policy.delay(n, None, rng) for n in (1, 2, 3, 4, 5)]
    for n, delay in zip((1, 2, 3, 4, 5), delays):
        ceiling = min(5.0, 2 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert policy.delay(1, 7.0, rng) == 7.0
    assert policy.delay(1, 600.0, rng) == 60.0  # an absurd hint is cut to the configured maximum


def test_breaker_opens_after_consecutive_failures_and_a_success_resets_the_count():
    breaker = CircuitBreaker(threshold=3)
    breaker.record_failure("a")
    breaker.record_failure("b")
    breaker.record_success()
    breaker.record_failure("c")
    breaker.record_failure("d")
    breaker.check()
    breaker.record_failure("e: 500 from server")
    with pytest.raises(CircuitOpenError, match=r"3 consecutive calls failed \(threshold 3\); last error: e: 500"):
        breaker.check()


def test_retries_transient_errors_until_success_and_reports_every_attempt():
    outcomes = [TransientTeacherError("503", status=503, retry_after=0.0), TransientTeacherError("timeout"), "ok"]
    attempts = []

    def call():
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    policy = RetryPolicy(base_delay_s=0.0)
    result = call_with_retries(call, policy, CircuitBreaker(5), on_attempt=lambda n, e: attempts.append((n, e is None)))
    assert result == "ok" and attempts == [(1, False), (2, False), (3, True)]


def test_gives_up_after_max_attempts_and_never_retries_a_rejected_prompt():
    calls = []

    def always(exc):
        def call():
            calls.append(exc)
            raise exc
        return call

    policy = RetryPolicy(max_attempts=3, base_delay_s=0.0)
    with pytest.raises(TransientTeacherError):
        call_with_retries(always(TransientTeacherError("500")), policy, CircuitBreaker(10))
    assert len(calls) == 3
    with pytest.raises(PromptRejectedError):
        call_with_retries(always(PromptRejectedError("400")), policy, CircuitBreaker(10))
    assert len(calls) == 4
    with pytest.raises(FatalTeacherError):
        call_with_retries(always(FatalTeacherError("401")), policy, CircuitBreaker(10))
    assert len(calls) == 5


def test_an_open_breaker_stops_retrying_at_once():
    breaker = CircuitBreaker(threshold=1)
    calls = []

    def failing():
        calls.append(1)
        raise TransientTeacherError("500", retry_after=30.0)

    began = time.monotonic()
    with pytest.raises(CircuitOpenError):
        call_with_retries(failing, RetryPolicy(max_attempts=10), breaker)
    assert len(calls) == 1 and time.monotonic() - began < 5  # the open breaker cuts the 30 s wait short


def test_a_trip_wakes_a_thread_sleeping_in_backoff():
    breaker = CircuitBreaker(threshold=100)
    sleeper = threading.Thread(target=breaker.sleep, args=(30.0,))
    began = time.monotonic()
    sleeper.start()
    breaker.trip("401 from the server")
    sleeper.join(5)
    assert not sleeper.is_alive() and time.monotonic() - began < 5
    with pytest.raises(CircuitOpenError, match="401 from the server"):
        breaker.check()

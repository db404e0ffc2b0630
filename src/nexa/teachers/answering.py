"""Asking a teacher a list of requests through the response cache, the price table and a budget: the one
way the lab pays for teacher answers (``nexa distill materialize`` runs its misses through the same
:class:`~nexa.teachers.dispatch.Dispatcher`; ``nexa eval`` scores API teachers with this)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from nexa.infra.cost import FREE, PriceTable
from nexa.ledger import Lab
from nexa.teachers.cache import CacheEntry, ResponseCache
from nexa.teachers.dispatch import DispatchSettings, Dispatcher
from nexa.teachers.errors import TeacherError
from nexa.teachers.faults import RetryPolicy
from nexa.teachers.protocol import Teacher, TeacherRequest


@dataclass
class Answers:
    """Per request (in order) its cached or new answer, or None with the reason in ``failures``."""

    entries: list[CacheEntry | None]
    failures: dict[int, str] = field(default_factory=dict)
    rejected: set[int] = field(default_factory=set)  # failures that are the teacher refusing the prompt itself
    fresh: set[int] = field(default_factory=set)  # answered by a new (paid) call in this ask, not from the cache
    hits: int = 0
    misses: int = 0
    spent_usd: float = 0.0  # new calls only: what this ask cost
    stopped: str | None = None  # "budget", "circuit" or "fatal" when the dispatcher stopped early
    error: TeacherError | None = None  # what stopped it

    @property
    def cost_usd(self) -> float:
        """What the answers cost when they were bought (cached ones included)."""
        return math.fsum(e.cost_usd for e in self.entries if e is not None)


def ask(lab: Lab, teacher: Teacher, requests: list[TeacherRequest], prices: PriceTable, run_id: str | None,
        log: Callable[..., None], budget_usd: float | None = None, concurrency: int = 4,
        retry: RetryPolicy | None = None, breaker_threshold: int = 10) -> Answers:
    """Cached answers first; the misses go out with bounded concurrency and retries, never past ``budget_usd``.
    An unpriced API model fails here (:class:`~nexa.infra.cost.UnknownPriceError`) before anything is sent."""
    price = prices.model_price(teacher.model_name) if teacher.bills_tokens else FREE
    cache = ResponseCache(lab.durable(), teacher.teacher_id)
    keys = [cache.key(r) for r in requests]
    unique = dict(zip(keys, requests))
    hits = cache.lookup(unique)
    settings = DispatchSettings(concurrency=concurrency, policy=retry or RetryPolicy(), breaker_threshold=breaker_threshold,
                                budget_usd=budget_usd)
    dispatcher = Dispatcher(teacher, cache, price, settings, run_id, log, lambda answered, spent: None)
    outcome = dispatcher.run([(k, r) for k, r in unique.items() if k not in hits])
    found = {**hits, **outcome.answers}
    return Answers(entries=[found.get(k) for k in keys],
                   failures={i: outcome.failures.get(k, "no answer") for i, k in enumerate(keys) if k not in found},
                   rejected={i for i, k in enumerate(keys) if k in outcome.rejected},
                   fresh={i for i, k in enumerate(keys) if k in outcome.answers and k not in hits},
                   hits=len(hits), misses=len(unique) - len(hits), spent_usd=outcome.spent_usd, stopped=outcome.stopped,
                   error=outcome.error)

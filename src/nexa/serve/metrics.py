"""Prometheus metrics of one server app, in its own registry so two apps (or tests) never share counters."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServeMetrics:
    """Requests by route and status, errors, request latency and tokens, plus the totals /api/status shows."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("nexa_serve_requests", "HTTP requests answered, by route and status code.",
                                ["route", "status"], registry=self.registry)
        self.errors = Counter("nexa_serve_errors", "Requests answered with a 4xx or 5xx, by route and error type.",
                              ["route", "type"], registry=self.registry)
        self.latency = Histogram("nexa_serve_request_seconds", "Time from request to the last byte of the answer.",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.prompt_tokens = Counter("nexa_serve_prompt_tokens", "Prompt tokens read, by capability.",
                                     ["capability"], registry=self.registry)
        self.generated_tokens = Counter("nexa_serve_generated_tokens", "Completion tokens generated, by capability.",
                                        ["capability"], registry=self.registry)
        self.batch_size = Histogram("nexa_serve_batch_prompts", "Prompts answered by one model call (dynamic batching).",
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry)
        self.started = time.time()
        self.served = 0  # completion and chat requests answered successfully
        self.total = 0

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.total += 1
        self.requests.labels(route=route, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def error(self, route: str, kind: str) -> None:
        self.errors.labels(route=route, type=kind).inc()

    def tokens(self, capability: str | None, prompt: int, completion: int) -> None:
        label = capability or "none"
        self.prompt_tokens.labels(capability=label).inc(prompt)
        self.generated_tokens.labels(capability=label).inc(completion)

    def answered(self) -> None:
        """One completion or chat request answered successfully (a list of prompts counts once)."""
        self.served += 1

    def render(self) -> bytes:
        return generate_latest(self.registry)

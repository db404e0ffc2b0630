"""Dynamic batching: concurrent greedy requests share one model call and get the answers they would get alone."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi.testclient import TestClient

from nexa.serve.app import create_app
from nexa.serve.batching import Batcher
from nexa.serve.engine import Job

PROMPTS = ["max(3,14)=", "12 km in m?", "7 km in m?", "max(8,42)=", "31 km in m?", "max(0,7)=", "2 km in m?", "max(9,9)="]


@pytest.fixture(scope="module")
def app(bundle):
    return create_app(bundle, max_batch=16)


def _sequential(app, bodies: list[dict]) -> list[dict]:
    with TestClient(app) as client:
        return [client.post("/v1/completions", json=b).json() for b in bodies]


async def _concurrent(app, bodies: list[dict], hold_model: bool) -> list[dict]:
    """All requests in flight at once; with ``hold_model`` the model is busy until all of them are queued."""
    engine = app.state.engine
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve") as client:
        if hold_model:
            engine.lock.acquire()
        accepted = app.state.batcher.accepted
        tasks = [asyncio.create_task(client.post("/v1/completions", json=b)) for b in bodies]
        if hold_model:
            for _ in range(1000):  # every request reaches the batcher while the model is busy
                await asyncio.sleep(0.01)
                if app.state.batcher.accepted - accepted == len(bodies):
                    break
            engine.lock.release()
        replies = await asyncio.gather(*tasks)
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
    return [r.json() for r in replies]


def _batch_sizes(app) -> tuple[float, float]:
    histogram = app.state.metrics.batch_size
    samples = {s.name: s.value for metric in histogram.collect() for s in metric.samples}
    return samples["nexa_serve_batch_prompts_count"], samples["nexa_serve_batch_prompts_sum"]


def test_greedy_requests_are_batched_with_the_same_answers(app):
    bodies = [{"model": "tiny:reasoning", "prompt": p, "max_tokens": 6} for p in PROMPTS]
    alone = _sequential(app, bodies)
    count_before, sum_before = _batch_sizes(app)
    together = asyncio.run(_concurrent(app, bodies, hold_model=True))
    count, total = _batch_sizes(app)
    # the first batch is taken when its worker first runs, everything that arrives later waits for the next one
    assert count - count_before <= 2 and total - sum_before == 8
    assert [r["choices"][0]["text"] for r in together] == [r["choices"][0]["text"] for r in alone]
    assert [r["usage"] for r in together] == [r["usage"] for r in alone]


def test_routed_requests_batch_across_capabilities(app):
    bodies = [{"model": "tiny", "prompt": p, "max_tokens": 5} for p in PROMPTS]
    alone = _sequential(app, bodies)
    together = asyncio.run(_concurrent(app, bodies, hold_model=True))
    assert [r["model"] for r in together] == [r["model"] for r in alone]
    assert {r["model"] for r in together} == {"tiny:reasoning", "tiny:science"}
    assert [r["choices"][0]["text"] for r in together] == [r["choices"][0]["text"] for r in alone]


def test_sampled_requests_are_not_batched(app):
    bodies = [{"model": "tiny:reasoning", "prompt": p, "max_tokens": 6, "temperature": 1.0, "seed": 5} for p in PROMPTS[:4]]
    alone = _sequential(app, bodies)
    count_before, _ = _batch_sizes(app)
    together = asyncio.run(_concurrent(app, bodies, hold_model=False))
    assert _batch_sizes(app)[0] - count_before == 4
    assert [r["choices"][0]["text"] for r in together] == [r["choices"][0]["text"] for r in alone]


class _FailsOnBad:
    """The real engine, except that a batch containing the prompt "BAD" raises as nexus would on a bad prompt."""

    def __init__(self, engine):
        self.engine, self.calls = engine, []

    def complete(self, job):
        self.calls.append(len(job.prompts))
        if "BAD" in job.prompts:
            raise ValueError("prompt 'BAD' is not allowed")
        return self.engine.complete(job)


def test_a_failing_request_does_not_fail_its_batch(app):
    engine = _FailsOnBad(app.state.engine)
    batcher = Batcher(engine, max_prompts=16)
    jobs = [Job([p], "reasoning", 6, 0.0, 1.0, None, [], False) for p in ["max(3,14)=", "BAD", "max(8,42)="]]

    async def run():
        return await asyncio.gather(*(batcher.complete(j) for j in jobs), return_exceptions=True)

    first, bad, third = asyncio.run(run())
    assert isinstance(bad, ValueError) and "BAD" in str(bad)
    assert first[0].text == app.state.engine.complete(jobs[0])[0].text
    assert third[0].text == app.state.engine.complete(jobs[2])[0].text
    assert engine.calls == [3, 1, 1, 1]  # one batch of three fails, then each job reruns alone

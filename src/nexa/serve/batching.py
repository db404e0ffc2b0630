"""Dynamic batching: greedy requests that arrive while the model is busy are answered together in one batch.

The model is used by one thread at a time, so under concurrent load requests queue anyway; answering the
queued ones in one ``complete_batch`` call costs little more than answering one. Only greedy requests
(temperature 0) are merged, and only with requests of the same capability, max_tokens, stop strings and
safety flag, so each answer is the one the request would get alone (the gate measured batched greedy
decoding too). Sampled requests run alone: a shared random generator would tie their samples to
whatever happened to share their batch.
"""

from __future__ import annotations

import asyncio

from starlette.concurrency import run_in_threadpool

from nexa.serve.engine import Engine, Job
from nexus.model import Generation

_Pending = tuple[Job, asyncio.Future]


class Batcher:
    """Queues greedy jobs and drains them in batches of at most ``max_prompts`` prompts."""

    def __init__(self, engine: Engine, max_prompts: int, on_batch=None):
        self.engine, self.max_prompts = engine, max_prompts
        self.on_batch = on_batch or (lambda size: None)
        self.pending: list[_Pending] = []
        self.worker: asyncio.Task | None = None
        self.accepted = 0  # jobs handed to complete(), batched or not


    async def complete(self, job: Job) -> list[Generation]:
        self.accepted += 1
        if self.max_prompts <= 1 or job.temperature > 0:
            self.on_batch(len(job.prompts))
            return await run_in_threadpool(self.engine.complete, job)
        future = asyncio.get_running_loop().create_future()
        self.pending.append((job, future))
        if self.worker is None or self.worker.done():
            self.worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self.pending:
            batch = self._take()
            merged = _merge([job for job, _ in batch])
            self.on_batch(len(merged.prompts))
            try:
                generations = await run_in_threadpool(self.engine.complete, merged)
            except Exception:  # noqa: BLE001 - not swallowed: each job reruns alone and gets its own error
                await self._one_by_one(batch)
                continue
            start = 0
            for job, future in batch:
                _settle(future, generations[start:start + len(job.prompts)])
                start += len(job.prompts)

    def _take(self) -> list[_Pending]:
        """The oldest pending job and every later one that can share its batch, up to ``max_prompts`` prompts."""
        key = _key(self.pending[0][0])
        taken, size, kept = [], 0, []
        for item in self.pending:
            fits = _key(item[0]) == key and (not taken or size + len(item[0].prompts) <= self.max_prompts)
            if fits:
                taken.append(item)
                size += len(item[0].prompts)
            else:
                kept.append(item)
        self.pending = kept
        return taken

    async def _one_by_one(self, batch: list[_Pending]) -> None:
        for job, future in batch:
            try:
                _settle(future, await run_in_threadpool(self.engine.complete, job))
            except Exception as exc:  # noqa: BLE001 - handed to the request that caused it
                if not future.done():
                    future.set_exception(exc)


def _key(job: Job) -> tuple:
    return job.capability, job.max_tokens, tuple(job.stop), job.enable_uncensored


def _merge(jobs: list[Job]) -> Job:
    first = jobs[0]
    return Job([p for job in jobs for p in job.prompts], first.capability, first.max_tokens, 0.0, 1.0, None,
               first.stop, first.enable_uncensored)


def _settle(future: asyncio.Future, generations: list[Generation]) -> None:
    if not future.done():  # the client may have gone away
        future.set_result(generations)

"""A teacher seen as a plain answerer of prompts, for callers that only need answer texts (``nexa data augment``).

Opened exactly as ``nexa distill materialize`` opens a teacher (:func:`nexa.teachers.opening.open_teacher`),
with the same retries and circuit breaker.
"""

from __future__ import annotations

from typing import Optional


class PromptTeacher:
    """A :mod:`nexa.teachers` client seen as :class:`nexa.data.augment.Teacher`: prompts in, answer texts out.

    Each prompt is one request (retried with backoff on transient errors); a prompt the teacher
    refuses gets an empty answer, which augment keeps as a rejected row.
    """

    def __init__(self, client, params, system: str | None, max_attempts: int):
        from nexa.teachers.faults import CircuitBreaker, RetryPolicy

        self.client, self.params, self.system = client, params, system
        self.retry = RetryPolicy(max_attempts=max_attempts)
        self.breaker = CircuitBreaker(threshold=max(10, max_attempts))
        self.name = client.model_name
        self.teacher_id, self.model_name = client.teacher_id, client.model_name

    def complete(self, prompts: list[str]) -> list[str]:
        from nexa.teachers.errors import PromptRejectedError
        from nexa.teachers.faults import call_with_retries
        from nexa.teachers.protocol import TeacherRequest

        requests = [TeacherRequest.from_prompt(p, self.params, system=self.system) for p in prompts]
        answers: list[str] = []
        step = max(1, self.client.max_batch)
        for start in range(0, len(requests), step):
            batch = requests[start:start + step]
            try:
                answers += [r.text for r in call_with_retries(lambda: self.client.complete(batch), self.retry, self.breaker)]
            except PromptRejectedError:
                answers += [""] * len(batch)
        return answers

    def close(self) -> None:
        self.client.close()


def open_prompt_teacher(target: str, model: Optional[str], api: str, key_env: Optional[str], system: Optional[str],
                    timeout_s: float, max_attempts: int, params: dict) -> PromptTeacher:
    """The teacher as ``nexa distill materialize`` opens it (a TeacherSpecError is a ValueError: a user error here)."""
    from nexa.teachers.opening import open_teacher
    from nexa.teachers.protocol import GenerationParams

    client = open_teacher(target, model, api=api, key_env=key_env, system=system, timeout_s=timeout_s)
    return PromptTeacher(client, GenerationParams(**params), system, max_attempts)

"""A teacher seen as a plain answerer of prompts, for callers that only need answer texts (``nexa data augment``).

Opened exactly as ``nexa distill materialize`` opens a teacher (:func:`nexa.teachers.opening.open_teacher`),
and asked through the same response cache, ``nexa.yaml`` prices and budget (:func:`nexa.teachers.answering.ask`).
"""

from __future__ import annotations

from typing import Optional


class PromptTeacher:
    """A :mod:`nexa.teachers` client seen as :class:`nexa.data.augment.Teacher`: prompts in, answer texts out.

    Prompts go through the teachers layer (response cache, ``nexa.yaml`` prices, ``budget_usd``; retried with
    backoff on transient errors); a prompt the teacher refuses gets an empty answer, which augment keeps as a
    rejected row.
    """

    def __init__(self, client, params, system: str | None, max_attempts: int, lab, budget_usd: float | None = None):
        from nexa.teachers.faults import RetryPolicy

        self.client, self.params, self.system, self.lab, self.budget_usd = client, params, system, lab, budget_usd
        self.retry = RetryPolicy(max_attempts=max_attempts)
        self.name = client.model_name
        self.teacher_id, self.model_name = client.teacher_id, client.model_name

    def complete(self, prompts: list[str]) -> list[str]:
        """Through nexa.teachers' response cache, prices and budget, as ``nexa distill materialize`` asks."""
        from nexa.infra.cost import PriceTable
        from nexa.teachers.answering import ask
        from nexa.teachers.errors import TeacherError
        from nexa.teachers.protocol import TeacherRequest

        requests = [TeacherRequest.from_prompt(p, self.params, system=self.system) for p in prompts]
        answers = ask(self.lab, self.client, requests, PriceTable.from_lab(self.lab), None, lambda *a, **k: None,
                      budget_usd=self.budget_usd, retry=self.retry, breaker_threshold=max(10, self.retry.max_attempts))
        unexpected = [reason for i, reason in answers.failures.items() if i not in answers.rejected]
        if answers.error is not None or unexpected:
            raise answers.error or TeacherError(unexpected[0])
        return ["" if e is None else e.response.text for e in answers.entries]  # refused prompts: empty, quarantined

    def close(self) -> None:
        self.client.close()


def open_prompt_teacher(target: str, lab, *, teacher_model: Optional[str], api: str = "chat", api_key_env: Optional[str] = None,
                        system: Optional[str] = None, timeout_s: float = 60.0, max_tokens: int = 256, temperature: float = 0.0,
                        seed: Optional[int] = None, max_attempts: int = 4, budget_usd: Optional[float] = None,
                        batch_size: int = 32) -> PromptTeacher:
    """The teacher as ``nexa distill materialize`` opens it, from the options every teacher command shares
    (:data:`nexa.teachers.options.TEACHER_CALL`); the seed applies when sampling (a TeacherSpecError is a ValueError:
    a user error here)."""
    from nexa.teachers.opening import open_teacher
    from nexa.teachers.protocol import GenerationParams

    client = open_teacher(target, teacher_model, api=api, key_env=api_key_env, system=system, timeout_s=timeout_s,
                          batch_size=batch_size)
    params = GenerationParams.with_seed(seed, max_tokens=max_tokens, temperature=temperature)
    return PromptTeacher(client, params, system, max_attempts, lab, budget_usd)

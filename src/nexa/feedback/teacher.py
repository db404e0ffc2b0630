"""Targeted data by teacher prompting: ask an OpenAI-compatible teacher to answer prompts of a weak domain.

Used when a weakness has no exact generator (a hypothesis-quality metric such as falsifiability) or
when the user asks for it. Prompts come from the built-in generators (their questions, not their
answers) or the hypothesis schema; answers are the teacher's, and the merge step quarantines any
that trip the safety red flags.
"""

from __future__ import annotations

from nexa.data.generators import CAPABILITIES, generate, generate_hypotheses

SYSTEM = ("Answer the question directly. For a hypothesis, state a falsifiable claim with a direction of effect, "
          "an experiment with controls and replicates, and its main risks.")


def weak_domain_prompts(capability: str, n: int, seed: int, exclude: set[str]) -> list[dict]:
    """Rows without answers yet: a built-in capability's questions, else hypothesis prompts for the domain."""
    if capability in CAPABILITIES:
        return [{k: v for k, v in r.items() if k != "answer"} for r in generate(capability, n, seed=seed, exclude=exclude)]
    rows = []
    for row in generate_hypotheses(n * 2, seed):
        prompt = f"{row['context']} {row['prompt']}"
        if prompt not in exclude and len(rows) < n:
            exclude.add(prompt)
            rows.append({"prompt": prompt, "capability": capability, "domain": row["domain"]})
    return rows


def teacher_rows(teacher, capability: str, n: int, seed: int, exclude: set[str], max_tokens: int = 256, *,
                 lab, run_id: str | None = None) -> list[dict]:
    """Ask ``teacher`` (a nexa.teachers client) for each prompt through the teachers layer's response cache
    and prices, as ``nexa distill materialize`` does (an unpriced API model is refused before any call);
    rows are train rows. A prompt left unanswered is an error, not a dropped row."""
    from nexa.infra.cost import PriceTable
    from nexa.teachers.answering import ask
    from nexa.teachers.protocol import GenerationParams, TeacherRequest

    prompts = weak_domain_prompts(capability, n, seed, set(exclude))
    params = GenerationParams(max_tokens=max_tokens, temperature=0.0)
    requests = [TeacherRequest.from_prompt(p["prompt"], params, system=SYSTEM) for p in prompts]
    answers = ask(lab, teacher, requests, PriceTable.from_lab(lab), run_id, lambda *args, **fields: None)
    if answers.failures:
        raise ValueError(f"teacher {teacher.teacher_id}: {len(answers.failures)} of {len(prompts)} prompts unanswered "
                         f"({answers.stopped or 'errors'}: {next(iter(answers.failures.values()))}); answers so far are cached")
    return [{**p, "answer": e.response.text.strip(), "split": "train"} for p, e in zip(prompts, answers.entries)]

"""Augment: new rows for a dataset, from a teacher (any object with ``complete(prompts) -> list[str]``) or a generator.

The data layer does not import ``nexa.teachers``: a teacher is whatever satisfies :class:`Teacher`, so
the teachers layer (or a test) passes one in. Without a teacher, the built-in generators make new
rows with exact answers. Either way the new rows are written to a JSONL file and go through
:func:`nexa.data.prepare.prepare` together with the base version, so they are validated,
deduplicated against it, split, and recorded with the base as parent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from nexa.data.generators import CAPABILITIES, generate, unknown_capability


@runtime_checkable
class Teacher(Protocol):
    """What augment needs from a teacher: a name for provenance and batched completion."""

    name: str

    def complete(self, prompts: list[str]) -> list[str]: ...


@dataclass
class Augmented:
    """New rows, and prompts the teacher answered with nothing usable (kept for the quarantine, never dropped)."""

    rows: list[dict[str, Any]]
    rejected: list[dict[str, Any]]


def prompts_for(capability: str, n: int, seed: int, exclude: set[str]) -> list[str]:
    """Fresh prompts of a built-in capability that the base version does not already hold."""
    _check_capability(capability)
    return [row["prompt"] for row in generate(capability, n, seed=seed, exclude=exclude)]


def _check_capability(capability: str) -> None:
    if capability not in CAPABILITIES:
        raise ValueError(unknown_capability(capability))


def from_teacher(teacher: Teacher, prompts: list[str], capability: str, batch_size: int = 32) -> Augmented:
    """Ask ``teacher`` for answers in batches; an empty answer or a wrong-length reply is an explicit error row."""
    if not isinstance(teacher, Teacher):
        raise TypeError(f"{type(teacher).__name__} is not a teacher: it needs a `name` and `complete(prompts) -> list[str]`")
    rows, rejected = [], []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start:start + batch_size]
        answers = teacher.complete(batch)
        if len(answers) != len(batch):
            raise ValueError(f"teacher {teacher.name!r} returned {len(answers)} completions for {len(batch)} prompts")
        for prompt, answer in zip(batch, answers):
            text = (answer or "").strip()
            target = rows if text else rejected
            target.append({"prompt": prompt, "answer": text, "capability": capability, "domain": f"teacher:{teacher.name}"})
    return Augmented(rows, rejected)


def from_generator(capability: str, n: int, seed: int, exclude: set[str]) -> Augmented:
    """The no-teacher path: new rows with exact answers from the built-in generator of ``capability``."""
    _check_capability(capability)
    return Augmented(generate(capability, n, seed=seed, exclude=exclude), [])


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> Path:
    """Rows (including rejected ones, so prepare quarantines them with a reason) as a JSONL input for prepare."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows), encoding="utf-8")
    return path

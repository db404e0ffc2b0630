"""Built-in capability generators: synthetic tasks whose answers are exact and checkable.

Each generator is a pure function of (n, seed) so a dataset version can be regenerated bit for
bit, and each row carries the capability it exercises so evaluation and routing can split by it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Iterator

Row = dict[str, str]

# Conversions whose factor is a power of ten, so the answer is the digits of the input with zeros
# appended or removed: learnable by a tiny model, checkable exactly.
_UNIT_FACTORS: dict[tuple[str, str], int] = {
    ("km", "m"): 1000,
    ("m", "cm"): 100,
    ("cm", "mm"): 10,
    ("kg", "g"): 1000,
    ("L", "mL"): 1000,
    ("kW", "W"): 1000,
}

_ELEMENTS = ["H", "C", "N", "O", "S", "P", "K", "Na", "Cl", "Ca", "Fe", "Mg"]


@dataclass(frozen=True)
class CapabilitySpec:
    """A built-in capability: its name, its domain label and the function that draws one row."""

    name: str
    domain: str
    draw: Callable[[random.Random], Row]


def _draw_comparison(rng: random.Random) -> Row:
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    return {"prompt": f"max({a},{b})=", "answer": str(max(a, b))}


def _draw_unit_conversion(rng: random.Random) -> Row:
    (src, dst), factor = rng.choice(sorted(_UNIT_FACTORS.items()))
    value = rng.randint(1, 999)
    return {"prompt": f"{value} {src} in {dst}?", "answer": str(value * factor)}


def _draw_atom_count(rng: random.Random) -> Row:
    symbols = rng.sample(_ELEMENTS, rng.randint(2, 3))
    counts = [rng.randint(1, 4) for _ in symbols]
    formula = "".join(sym + (str(c) if c > 1 else "") for sym, c in zip(symbols, counts))
    return {"prompt": f"atoms in {formula}?", "answer": str(sum(counts))}


CAPABILITIES: dict[str, CapabilitySpec] = {
    spec.name: spec
    for spec in (
        CapabilitySpec("reasoning", "comparison", _draw_comparison),
        CapabilitySpec("science", "unit_conversion", _draw_unit_conversion),
        CapabilitySpec("chemistry", "formula", _draw_atom_count),
    )
}


def generate(capability: str, n: int, seed: int, exclude: set[str] | None = None) -> list[Row]:
    """Draw ``n`` distinct rows of one capability, skipping prompts in ``exclude`` (held-out sets)."""
    spec = _capability(capability)
    rng = random.Random(f"{capability}:{seed}")
    seen = set(exclude or ())
    rows: list[Row] = []
    for row in _distinct(spec, rng, seen, max_draws=max(1000, n * 50)):
        rows.append({**row, "capability": spec.name, "domain": spec.domain})
        if len(rows) == n:
            return rows
    raise ValueError(
        f"capability {capability!r} could only produce {len(rows)} distinct rows of the {n} asked "
        f"(after excluding {len(exclude or ())} held-out prompts); ask for fewer rows"
    )


def _distinct(spec: CapabilitySpec, rng: random.Random, seen: set[str], max_draws: int) -> Iterator[Row]:
    for _ in range(max_draws):
        row = spec.draw(rng)
        if row["prompt"] not in seen:
            seen.add(row["prompt"])
            yield row


def _capability(name: str) -> CapabilitySpec:
    if name not in CAPABILITIES:
        raise KeyError(unknown_capability(name))
    return CAPABILITIES[name]


def unknown_capability(name: str) -> str:
    return f"no built-in generator for {name!r}; built-in capabilities are {sorted(CAPABILITIES)}"


def generate_task(task: str, n: int, seed: int) -> tuple[list[Row], str]:
    """``nexa data generate``: ``n`` rows of a built-in capability (row schema qa) or hypothesis rows, and the schema."""
    if task == "hypothesis":
        return generate_hypotheses(n, seed), "hypothesis"
    if task not in CAPABILITIES:
        raise ValueError(unknown_capability(task))
    return generate(task, n, seed=seed), "qa"


_HYPOTHESIS_TOPICS = [
    ("plasma confinement", "magnetic field strength", "confinement time"),
    ("battery cathodes", "nickel fraction", "capacity fade"),
    ("perovskite solar cells", "humidity during annealing", "power conversion efficiency"),
    ("catalysis", "platinum loading", "turnover frequency"),
    ("superconductors", "oxygen doping", "critical temperature"),
]


def generate_hypotheses(n: int, seed: int) -> list[dict]:
    """Rows in the spec's hypothesis schema (v1 §4): context, prompt, structured target answer."""
    rng = random.Random(f"hypothesis:{seed}")
    rows = []
    for i in range(n):
        topic, knob, outcome = rng.choice(_HYPOTHESIS_TOPICS)
        direction = rng.choice(["increases", "decreases"])
        rows.append(
            {
                "context": f"Study {i}: recent measurements in {topic} vary widely with {knob}.",
                "prompt": f"Propose a testable hypothesis linking {knob} to {outcome}.",
                "target_answer": {
                    "hypothesis": f"Raising {knob} {direction} {outcome} monotonically within the studied range.",
                    "methodology": f"Vary {knob} over five levels with three replicates each; measure {outcome}; "
                    "fit a monotonic trend and test it against a flat null at alpha 0.05.",
                    "risks": f"Confounding from sample preparation; {outcome} drift over time; safety limits of the apparatus.",
                },
                "domain": topic,
                "source": "synthetic",
                "quality_score": round(rng.uniform(0.6, 1.0), 3),
            }
        )
    return rows

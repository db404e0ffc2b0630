"""Weakness rules: small, readable conditions over an eval report's leaderboard rows.

A rule is written the way people say it — ``accuracy < 0.9 on capability reasoning`` or
``falsifiability < 4.0`` — and parsed into a :class:`WeaknessRule`; ``accuracy`` is the exact-match
metric. A rule without ``on capability X`` applies to every capability of the report.
"""

from __future__ import annotations

import operator
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RULE_SCHEMA_VERSION = 1
METRIC_ALIASES = {"accuracy": "exact_match", "exact": "exact_match"}
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_RULE = re.compile(r"^\s*(?P<metric>[a-z_]+)\s*(?P<op><=|>=|<|>)\s*(?P<threshold>[0-9]*\.?[0-9]+)"
                   r"(?:\s+on\s+(?:capability\s+)?(?P<capability>[A-Za-z0-9_.-]+))?\s*$")
DEFAULT_RULES = ("accuracy < 0.9", "falsifiability < 4.0")


class WeaknessRule(BaseModel):
    """``metric op threshold`` on one capability (or all): true means the capability is weak."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = RULE_SCHEMA_VERSION
    metric: str
    op: Literal["<", "<=", ">", ">="]
    threshold: float
    capability: str | None = None
    text: str = Field(description="The rule as written.")

    def matches(self, row: dict[str, Any]) -> bool:
        if row["metric"] != self.metric or (self.capability and row["capability"] != self.capability):
            return False
        return _OPS[self.op](row["score"], self.threshold)


class Weakness(BaseModel):
    """One (model, capability) that a rule found weak, with the score that tripped it."""

    model_config = ConfigDict(extra="forbid")

    model: str
    capability: str
    metric: str
    score: float
    threshold: float
    rule: str
    dataset: str


def parse_rule(text: str) -> WeaknessRule:
    """``accuracy < 0.9 on capability reasoning`` → WeaknessRule; a bad rule names what was expected."""
    match = _RULE.match(text)
    if not match:
        raise ValueError(f"weakness rule {text!r} is not of the form 'METRIC < NUMBER [on capability NAME]' "
                         "(e.g. 'accuracy < 0.9 on capability reasoning', 'falsifiability < 4.0')")
    metric = METRIC_ALIASES.get(match["metric"], match["metric"])
    return WeaknessRule(metric=metric, op=match["op"], threshold=float(match["threshold"]),
                        capability=match["capability"], text=text.strip())


def find_weaknesses(rows: list[dict[str, Any]], rules: list[WeaknessRule], roles: tuple[str, ...] = ("student",),
                    models: list[str] | None = None) -> list[Weakness]:
    """Every (model, capability, metric) row of the chosen models/roles that some rule flags, once each."""
    found: dict[tuple, Weakness] = {}
    for row in rows:
        if (models and row["model"] not in models) or (not models and row["role"] not in roles):
            continue
        for rule in rules:
            key = (row["model"], row["capability"], row["metric"])
            if key not in found and rule.matches(row):
                found[key] = Weakness(model=row["model"], capability=row["capability"], metric=row["metric"],
                                      score=row["score"], threshold=rule.threshold, rule=rule.text,
                                      dataset=row.get("dataset") or "")
    return sorted(found.values(), key=lambda w: (w.capability, w.metric, w.model))

"""Unphysical-value rules as plug-ins: each finds rows whose text states a quantity nature does not allow.

A rule is a name, a one-line description and a function from the rows' text (an Arrow string array)
and table to a boolean mask. Built-ins cover temperatures below 0 K, efficiencies above 100 %,
probabilities outside [0, 1] and negative concentrations; :func:`register_rule` adds a project's own,
and :func:`load_rule` imports one given as ``module:function`` on the command line.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

RuleCheck = Callable[[pa.Array, pa.Table], np.ndarray]


@dataclass(frozen=True)
class UnphysicalRule:
    name: str
    description: str
    check: RuleCheck


RULES: dict[str, UnphysicalRule] = {}


def register_rule(name: str, description: str) -> Callable[[RuleCheck], RuleCheck]:
    """Decorator: make ``check`` available to the unphysical filter under ``name``."""
    def wrap(check: RuleCheck) -> RuleCheck:
        RULES[name] = UnphysicalRule(name, description, check)
        return check
    return wrap


def load_rule(spec: str) -> str:
    """Import ``module:function`` (decorated with :func:`register_rule` or a plain check) and return its rule name."""
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"rule {spec!r} is not of the form module:function")
    check = getattr(importlib.import_module(module_name), attr)
    found = next((r.name for r in RULES.values() if r.check is check), None)
    if found is None:
        register_rule(attr, (check.__doc__ or attr).strip().splitlines()[0])(check)
        found = attr
    return found


def _numbers(text: pa.Array, pattern: str) -> np.ndarray:
    """The first number captured by ``pattern``'s group ``v`` in each row, NaN where there is none."""
    found = pc.struct_field(pc.extract_regex(text, pattern), [0])
    cleaned = pc.replace_substring(found, " ", "")
    return pc.fill_null(pc.cast(cleaned, pa.float64()), float("nan")).to_numpy(zero_copy_only=False)


_NUM = r"(?P<v>[-−]?\s?\d+(?:\.\d+)?)"


@register_rule("negative_kelvin", "a temperature below absolute zero (negative kelvin)")
def negative_kelvin(text: pa.Array, table: pa.Table) -> np.ndarray:
    return _numbers(pc.replace_substring(text, "−", "-"), rf"(?i){_NUM}\s?(?:k|kelvin)\b") < 0


@register_rule("efficiency_over_100", "an efficiency above 100 %")
def efficiency_over_100(text: pa.Array, table: pa.Table) -> np.ndarray:
    before = _numbers(text, rf"(?i)efficienc\w*[^0-9%.\-]{{0,40}}{_NUM}\s?%")
    after = _numbers(text, rf"(?i){_NUM}\s?%\s+(?:\w+\s+)?efficien")
    return (before > 100) | (after > 100)


@register_rule("probability_out_of_range", "a probability below 0 or above 1")
def probability_out_of_range(text: pa.Array, table: pa.Table) -> np.ndarray:
    value = _numbers(pc.replace_substring(text, "−", "-"), rf"(?i)probabilit\w*[^0-9%\-]{{0,30}}{_NUM}(?:[^%0-9.]|$)")
    return (value < 0) | (value > 1)


@register_rule("negative_concentration", "a negative concentration")
def negative_concentration(text: pa.Array, table: pa.Table) -> np.ndarray:
    text = pc.replace_substring(text, "−", "-")
    named = _numbers(text, rf"(?i)concentration[^0-9\-]{{0,30}}{_NUM}")
    unit = _numbers(text, rf"{_NUM}\s?(?:mol/L|mol L-1|mM|µM|uM|M)\b")
    return (named < 0) | (unit < 0)

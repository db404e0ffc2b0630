"""Validating rows against a row schema column-wise: types, required fields, enums and bounds with pyarrow.

:func:`conform` casts each loaded column to the schema's Arrow type (strings from CSV become numbers
only where they parse), and :func:`check` runs every other constraint as a vectorised kernel. Both
record, for each failing row, the first field and reason, worded as ``jsonschema`` words it. Rows the
columnar path cannot hold (unparseable lines, objects of the wrong shape) go through
:func:`validate_objects`, which uses ``jsonschema`` row by row, only for them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nexa.data.schema import FieldSpec, RowSchema

_NUMBER = r"^\s*-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
_INTEGER = r"^\s*-?\d+\s*$"
_BOOLEAN = r"^\s*(true|false|True|False)\s*$"
_JSON_TYPE = {"string": "string", "number": "number", "integer": "integer", "boolean": "boolean", "object": "object"}


@dataclass
class Problems:
    """The first (field, reason) of each failing row of one batch; later checks never overwrite earlier ones."""

    n: int
    bad: np.ndarray = field(init=False)
    where: list = field(init=False)
    reason: list = field(init=False)

    def __post_init__(self) -> None:
        self.bad = np.zeros(self.n, dtype=bool)
        self.where = [None] * self.n
        self.reason = [None] * self.n

    def add(self, mask: np.ndarray, where: str | None, reason: Callable[[int], str] | str) -> None:
        """Mark rows of ``mask`` not already bad; ``reason`` is text or a function of the row index."""
        new = np.flatnonzero(mask & ~self.bad)
        for i in new:
            self.where[i] = where
            self.reason[i] = reason(int(i)) if callable(reason) else reason
        self.bad[new] = True


def as_mask(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow result as numpy, nulls read as False."""
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def _value(column: pa.Array | pa.ChunkedArray) -> Callable[[int], Any]:
    return lambda i: column[i].as_py()


# -- conform: cast loaded columns to the schema's types --------------------------------------------
def conform(table: pa.Table, schema: RowSchema, problems: Problems) -> pa.Table:
    """The table with exactly the schema's columns, in order and typed; type errors go to ``problems``."""
    columns = [_conform_column(table.column(f.path) if f.path in table.column_names else None, f, problems, table.num_rows)
               for f in schema.fields]
    known = {f.path for f in schema.fields}
    for name in table.column_names:
        if name not in known and not name.startswith("__") and schema.closed:
            problems.add(as_mask(pc.is_valid(table.column(name))), name,
                         f"Additional properties are not allowed ({name!r} was unexpected)")
    return pa.Table.from_arrays([_combine(c) for c in columns], schema=schema.arrow_schema())


def _combine(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _conform_column(column, spec: FieldSpec, problems: Problems, n: int, parent: str = ""):
    target = spec.arrow_type()
    where = f"{parent}{spec.path}"
    if column is None:
        return pa.nulls(n, target)
    column = _combine(column)
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if pa.types.is_null(column.type):
        return pa.nulls(n, target)
    if spec.base_type == "object":
        return _conform_struct(column, spec, problems, where)
    if column.type == target:
        return column
    if _safe_cast(column.type, spec.base_type):
        return pc.cast(column, target)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return _parse_strings(column, spec, problems, where)
    return _reject(column, spec, problems, where, f"is not of type {_JSON_TYPE[spec.base_type]!r} (column type {column.type})")


def _safe_cast(source: pa.DataType, json_type: str) -> bool:
    if json_type == "string":
        return pa.types.is_string(source) or pa.types.is_large_string(source)
    if json_type == "integer":
        return pa.types.is_integer(source)
    if json_type == "number":
        return pa.types.is_integer(source) or pa.types.is_floating(source)
    return json_type == "boolean" and pa.types.is_boolean(source)


def _parse_strings(column: pa.Array, spec: FieldSpec, problems: Problems, where: str) -> pa.Array:
    """Text (CSV cells) into numbers or booleans where it parses; the rest are type errors."""
    pattern = {"number": _NUMBER, "integer": _INTEGER, "boolean": _BOOLEAN}.get(spec.base_type)
    if pattern is None:
        return _reject(column, spec, problems, where, f"is not of type {spec.base_type!r}")
    stripped = pc.utf8_trim_whitespace(column)
    blank = as_mask(pc.equal(stripped, ""))
    ok = as_mask(pc.match_substring_regex(column, pattern))
    bad = as_mask(pc.is_valid(column)) & ~ok & ~blank
    value = _value(column)
    problems.add(bad, where, lambda i: f"{value(i)!r} is not of type {spec.base_type!r}")
    kept = pc.if_else(pa.array(ok), stripped, pa.nulls(len(column), pa.string()))
    if spec.base_type == "boolean":
        return pc.equal(pc.utf8_lower(kept), "true")
    return pc.cast(kept, spec.arrow_type())


def _reject(column: pa.Array, spec: FieldSpec, problems: Problems, where: str, reason: str) -> pa.Array:
    value = _value(column)
    problems.add(as_mask(pc.is_valid(column)), where, lambda i: f"{value(i)!r} {reason}")
    return pa.nulls(len(column), spec.arrow_type())


def _conform_struct(column: pa.Array, spec: FieldSpec, problems: Problems, where: str) -> pa.Array:
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = _parse_objects(column, spec, problems, where)
    if not pa.types.is_struct(column.type):
        return _reject(column, spec, problems, where, "is not of type 'object'")
    names = [column.type.field(i).name for i in range(column.type.num_fields)]
    children = []
    for child in spec.children:
        source = pc.struct_field(column, [names.index(child.path)]) if child.path in names else None
        children.append(_combine(_conform_column(source, child, problems, len(column), parent=f"{where}.")))
    if spec.closed:
        for extra in sorted(set(names) - {c.path for c in spec.children}):
            values = pc.struct_field(column, [names.index(extra)])
            problems.add(as_mask(pc.is_valid(values)), f"{where}.{extra}",
                         f"Additional properties are not allowed ({extra!r} was unexpected)")
    return pa.StructArray.from_arrays(children, fields=list(spec.arrow_type()), mask=pc.is_null(column))


def _parse_objects(column: pa.Array, spec: FieldSpec, problems: Problems, where: str) -> pa.Array:
    """Object fields stored as JSON text (a CSV cell): parsed per cell, shape-checked, then typed."""
    objects = []
    for i, text in enumerate(column.to_pylist()):
        obj, problem = _load_object(text, spec)
        if problem is not None:
            problems.add(np.arange(len(column)) == i, where, f"{text!r} {problem}")
        objects.append(obj)
    return pa.array(objects, spec.arrow_type())


def _load_object(text: str | None, spec: FieldSpec) -> tuple[dict | None, str | None]:
    if text is None or not text.strip():
        return None, None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return None, "is not of type 'object' (not JSON)"
    if not isinstance(obj, dict):
        return None, "is not of type 'object'"
    wrong = [c.path for c in spec.children if obj.get(c.path) is not None and not _is_json_type(obj[c.path], c.base_type)]
    if wrong:
        return None, f"has {wrong[0]!r} of the wrong type (expected {spec.children[0].base_type})"
    extra = sorted(set(obj) - {c.path for c in spec.children})
    if extra and spec.closed:
        return None, f"has unexpected property {extra[0]!r}"
    return {c.path: obj.get(c.path) for c in spec.children}, None


def _is_json_type(value: Any, json_type: str) -> bool:
    checks = {"string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
              "integer": lambda v: (isinstance(v, int) or isinstance(v, float) and v.is_integer()) and not isinstance(v, bool),
              "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "object": lambda v: isinstance(v, dict)}
    return checks[json_type](value) and json_type != "object"


# -- check: the remaining constraints, vectorised ---------------------------------------------------
def check(table: pa.Table, schema: RowSchema, problems: Problems) -> None:
    """Required fields, enums, length and range bounds of every (nested) field of a conformed table."""
    for spec in schema.fields:
        _check_column(table.column(spec.path).combine_chunks(), spec, problems, "", None)


def _check_column(column: pa.Array, spec: FieldSpec, problems: Problems, parent: str, present: np.ndarray | None) -> None:
    where = f"{parent}{spec.path}"
    null = as_mask(pc.is_null(column))
    if present is not None:
        null &= present
    if spec.required and not spec.nullable:
        problems.add(null, where, f"{spec.path!r} is a required property")
    value = _value(column)
    kw = spec.keywords
    if "enum" in kw:
        allowed = pa.array([v for v in kw["enum"] if v is not None], spec.arrow_type())
        problems.add(~as_mask(pc.is_in(column, value_set=allowed)) & ~null, where, lambda i: f"{value(i)!r} is not one of {kw['enum']}")
    if "minLength" in kw:
        problems.add(_length_outside(column, kw["minLength"], shorter=True), where,
                     lambda i: f"{value(i)!r} should be non-empty" if kw["minLength"] == 1 else f"{value(i)!r} is too short")
    if "maxLength" in kw:
        problems.add(_length_outside(column, kw["maxLength"], shorter=False), where, lambda i: f"{value(i)!r} is too long")
    if "minimum" in kw:
        problems.add(as_mask(pc.less(column, kw["minimum"])), where, lambda i: f"{value(i)} is less than the minimum of {kw['minimum']}")
    if "maximum" in kw:
        problems.add(as_mask(pc.greater(column, kw["maximum"])), where, lambda i: f"{value(i)} is greater than the maximum of {kw['maximum']}")
    if spec.base_type == "number":
        problems.add(as_mask(pc.is_nan(column)), where, lambda i: "NaN is not a JSON number")
    if spec.base_type == "object":
        for index, child in enumerate(spec.children):
            _check_column(pc.struct_field(column, [index]), child, problems, f"{where}.", ~null)


def _length_outside(column: pa.Array, bound: int, shorter: bool) -> np.ndarray:
    """Strings with fewer (``shorter``) or more characters than ``bound``; nulls are never outside.

    A UTF-8 character takes one to four bytes, so the byte length (read off the offsets) settles
    most rows; characters are counted only for rows it cannot settle (none at all for ``minLength: 1``).
    """
    valid = as_mask(pc.is_valid(column))
    size = pc.fill_null(pc.binary_length(column), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    if shorter:  # chars <= bytes, and chars >= ceil(bytes / 4)
        outside, unsure = size < bound, (size >= bound) & (size < 4 * bound - 3)
    else:
        outside, unsure = size > 4 * bound, (size > bound) & (size <= 4 * bound)
    outside &= valid
    rows = np.flatnonzero(unsure & valid)
    if len(rows):
        chars = pc.utf8_length(column.take(pa.array(rows))).to_numpy(zero_copy_only=False)
        outside[rows] = chars < bound if shorter else chars > bound
    return outside


# -- the per-row path ------------------------------------------------------------------------------
def validate_objects(schema: RowSchema, objects: list[Any]) -> tuple[list[int], list[tuple[int, str | None, str]]]:
    """Row by row, for rows the columnar path cannot hold: (valid indexes, [(index, field, reason)]).

    Schemas the column checks cover exactly are checked by :func:`first_problem` (the same rules in
    plain Python, worded like ``jsonschema``); any other schema goes through ``jsonschema`` itself.
    """
    good, bad = [], []
    check_one = (lambda row: first_problem(schema.fields, row, schema.closed, "")) if schema.exact else schema.first_error
    for i, obj in enumerate(objects):
        error = check_one(obj) if isinstance(obj, dict) else (None, f"row is not a JSON object (got {type(obj).__name__})")
        if error is None and _has_nan(obj):
            error = (None, "NaN or Infinity is not a JSON number")
        if error is None:
            good.append(i)
        else:
            bad.append((i, *error))
    return good, bad


def _has_nan(obj: Any) -> bool:
    if isinstance(obj, float):
        return obj != obj or obj in (float("inf"), float("-inf"))
    if isinstance(obj, dict):
        return any(_has_nan(v) for v in obj.values())
    return False


def first_problem(fields: tuple[FieldSpec, ...], row: dict, closed: bool, prefix: str) -> tuple[str | None, str] | None:
    """The first violation of ``row`` against the flattened schema, in ``jsonschema``'s words; None when valid."""
    for spec in fields:
        where = f"{prefix}{spec.path}"
        if spec.path not in row:
            if spec.required:
                return where, f"{spec.path!r} is a required property"
            continue
        problem = _value_problem(spec, row[spec.path], where)
        if problem is not None:
            return problem
    if closed:
        extra = [k for k in row if k not in {f.path for f in fields}]
        if extra:
            return f"{prefix}{extra[0]}", f"Additional properties are not allowed ({extra[0]!r} was unexpected)"
    return None


def _value_problem(spec: FieldSpec, value: Any, where: str) -> tuple[str, str] | None:
    if value is None:
        return None if spec.nullable else (where, f"None is not of type {spec.base_type!r}")
    if not _is_json_type(value, spec.base_type) and not (spec.base_type == "object" and isinstance(value, dict)):
        return where, f"{value!r} is not of type {spec.base_type!r}"
    kw = spec.keywords
    if "enum" in kw and value not in kw["enum"]:
        return where, f"{value!r} is not one of {kw['enum']}"
    if "minLength" in kw and len(value) < kw["minLength"]:
        return where, f"{value!r} should be non-empty" if kw["minLength"] == 1 else f"{value!r} is too short"
    if "maxLength" in kw and len(value) > kw["maxLength"]:
        return where, f"{value!r} is too long"
    if "minimum" in kw and value < kw["minimum"]:
        return where, f"{value} is less than the minimum of {kw['minimum']}"
    if "maximum" in kw and value > kw["maximum"]:
        return where, f"{value} is greater than the maximum of {kw['maximum']}"
    if spec.base_type == "object":
        return first_problem(spec.children, value, spec.closed, f"{where}.")
    return None

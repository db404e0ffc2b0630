"""Row schemas: versioned JSON Schema files, compiled once into an Arrow schema plus column checks.

A row schema is a JSON Schema document with an ``x-nexa`` block (name, version, text fields). It is
used twice: :func:`compile_checks` turns the keywords it understands (type, required, enum, length and
range bounds, nested objects) into vectorised checks over Arrow columns, so millions of rows validate
without a Python loop; ``jsonschema`` checks single rows the fast path cannot (unparseable lines,
wrong types) and words their reason. A schema using any other keyword is marked ``exact=False`` and
every row then also goes through ``jsonschema``, so a row is never let through unchecked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa

from nexa.ledger.store import atomic_write_bytes

SCHEMA_DIR = "schemas"
_SUPPORTED = {"type", "required", "properties", "additionalProperties", "enum", "minLength", "maxLength",
              "minimum", "maximum", "description", "title", "$schema", "$id", "x-nexa"}
_ARROW_TYPES = {"string": pa.string(), "number": pa.float64(), "integer": pa.int64(), "boolean": pa.bool_()}


class SchemaNotFoundError(LookupError):
    """A schema name that is neither built in, registered in the lab, nor a readable file."""


@dataclass(frozen=True)
class FieldSpec:
    """One property of a row schema, flattened: its dotted path, JSON types and the bounds to check."""

    path: str
    types: tuple[str, ...]
    required: bool
    keywords: dict[str, Any] = field(default_factory=dict)
    children: tuple["FieldSpec", ...] = ()
    closed: bool = False  # additionalProperties: false

    @property
    def nullable(self) -> bool:
        return "null" in self.types

    @property
    def base_type(self) -> str:
        return next(t for t in self.types if t != "null")

    def arrow_type(self) -> pa.DataType:
        if self.base_type == "object":
            return pa.struct([pa.field(c.path.rsplit(".", 1)[-1], c.arrow_type()) for c in self.children])
        return _ARROW_TYPES[self.base_type]


@dataclass(frozen=True)
class RowSchema:
    """A loaded, checked row schema: name, version, the JSON Schema document and its compiled form."""

    name: str
    version: int
    document: dict[str, Any]
    text_fields: tuple[str, ...]
    source: str

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @cached_property
    def validator(self) -> "Draft202012Validator":  # noqa: F821 - jsonschema is imported when a row needs it (start-up)
        from jsonschema import Draft202012Validator

        return Draft202012Validator(self.document)

    @cached_property
    def fields(self) -> tuple[FieldSpec, ...]:
        return _field_specs(self.document, prefix="")

    @cached_property
    def exact(self) -> bool:
        """True when the column checks decide exactly what ``jsonschema`` would (no unsupported keyword)."""
        return _only_supported(self.document)

    @cached_property
    def closed(self) -> bool:
        return self.document.get("additionalProperties") is False

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(f.path, f.arrow_type()) for f in self.fields])

    def first_error(self, row: Any) -> tuple[str | None, str] | None:
        """``(field, reason)`` of the first violation ``jsonschema`` finds in ``row``, or None when valid."""
        error = next(iter(self.validator.iter_errors(row)), None)
        if error is None:
            return None
        where = ".".join(str(p) for p in error.absolute_path) or None
        if error.validator == "required" and where is None:
            where = error.message.split("'")[1] if "'" in error.message else None
        if error.validator == "additionalProperties" and "'" in error.message:
            where = ".".join(filter(None, [where, error.message.split("'")[1]]))
        return where, error.message


def _field_specs(node: dict[str, Any], prefix: str) -> tuple[FieldSpec, ...]:
    required = set(node.get("required", []))
    specs = []
    for name, prop in node.get("properties", {}).items():
        types = prop.get("type", "string")
        types = tuple(types) if isinstance(types, list) else (types,)
        path = f"{prefix}{name}"
        children = _field_specs(prop, prefix="") if "object" in types else ()
        keywords = {k: prop[k] for k in ("enum", "minLength", "maxLength", "minimum", "maximum") if k in prop}
        specs.append(FieldSpec(path, types, name in required, keywords, children, prop.get("additionalProperties") is False))
    return tuple(specs)


def _only_supported(node: dict[str, Any]) -> bool:
    if set(node) - _SUPPORTED:
        return False
    for prop in node.get("properties", {}).values():
        types = prop.get("type")
        types = types if isinstance(types, list) else [types]
        if None in types or len([t for t in types if t != "null"]) != 1 or not _only_supported(prop):
            return False
        if "object" not in types and set(types) - {"null", *_ARROW_TYPES}:
            return False
        if "object" in types and "null" in types:
            return False
    return node.get("additionalProperties", True) in (True, False)


def parse_schema(document: dict[str, Any], source: str, *, shipped: bool = False) -> RowSchema:
    """Check a JSON Schema document and its ``x-nexa`` block; every problem names ``source``.

    ``shipped``: a schema file of this package, whose JSON Schema validity the test suite checks
    (``test_shipped_schemas_are_valid_json_schema``), so commands skip importing ``jsonschema`` for it.
    """
    if not shipped:
        check_json_schema(document, source)
    meta = document.get("x-nexa")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not isinstance(meta.get("version"), int):
        raise ValueError(f'{source}: needs an "x-nexa" object with "name" (string) and "version" (integer)')
    if document.get("type") != "object" or not document.get("properties"):
        raise ValueError(f'{source}: a row schema must be "type": "object" with "properties"')
    text_fields = tuple(meta.get("text_fields") or [f for f, p in document["properties"].items() if p.get("type") == "string"])
    unknown = [f for f in text_fields if f not in document["properties"]]
    if unknown:
        raise ValueError(f"{source}: x-nexa.text_fields names {unknown}, which are not properties")
    return RowSchema(meta["name"], meta["version"], document, text_fields, source)


def check_json_schema(document: dict[str, Any], source: str) -> None:
    """Raise ``ValueError`` naming ``source`` unless ``document`` is a valid JSON Schema (draft 2020-12)."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(document)
    except SchemaError as exc:
        raise ValueError(f"{source}: not a valid JSON Schema: {exc.message}") from exc


def builtin_schemas() -> dict[str, RowSchema]:
    """Every schema file shipped in ``nexa/data/schemas`` by name (the highest version wins)."""
    found: dict[str, RowSchema] = {}
    for entry in sorted(resources.files("nexa.data").joinpath(SCHEMA_DIR).iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".json"):
            schema = parse_schema(json.loads(entry.read_text()), f"nexa/data/schemas/{entry.name}", shipped=True)
            if schema.name not in found or found[schema.name].version < schema.version:
                found[schema.name] = schema
    return found


def lab_schema_dir(registry_dir: Path) -> Path:
    return Path(registry_dir) / "schemas"


def register_schema(registry_dir: Path, file: Path) -> tuple[RowSchema, Path]:
    """Copy a user's schema file into the lab's registry as ``NAME.vN.json``; the same file twice is a no-op."""
    document = _read_json(file)
    schema = parse_schema(document, str(file))
    target = lab_schema_dir(registry_dir) / f"{schema.name}.v{schema.version}.json"
    data = json.dumps(document, indent=2, sort_keys=True).encode()
    if target.exists() and target.read_bytes() != data:
        raise FileExistsError(f"{target} already holds a different {schema.ref}; bump x-nexa.version in {file}")
    atomic_write_bytes(target, data)
    return schema, target


def load_schema(name: str, registry_dir: Path | None = None) -> RowSchema:
    """A schema by ``NAME`` or ``NAME@VERSION`` (lab registry first, then built in) or by a file path."""
    if name.endswith(".json") and Path(name).exists():
        return parse_schema(_read_json(Path(name)), name)
    base, _, version = name.partition("@")
    candidates = _lab_schemas(registry_dir, base) if registry_dir else []
    builtin = builtin_schemas()
    if base in builtin:
        candidates.append(builtin[base])
    if version:
        candidates = [c for c in candidates if str(c.version) == version.lstrip("v")]
    if not candidates:
        known = sorted({*builtin, *(p.name.split(".v")[0] for p in _lab_files(registry_dir))})
        raise SchemaNotFoundError(f"no row schema {name!r}; known schemas: {known} (or pass a .json file, "
                                  "or add one with `nexa data schema register FILE`)")
    return max(candidates, key=lambda s: s.version)


def _lab_files(registry_dir: Path | None) -> list[Path]:
    return sorted(lab_schema_dir(registry_dir).glob("*.json")) if registry_dir else []


def known_schemas(registry_dir: Path) -> list[RowSchema]:
    """Every row schema a lab can name (``nexa data schema list``): the built-in ones, then the lab's registered ones."""
    return [*builtin_schemas().values(), *(parse_schema(_read_json(p), str(p)) for p in _lab_files(registry_dir))]


def _lab_schemas(registry_dir: Path, base: str) -> list[RowSchema]:
    return [parse_schema(_read_json(p), str(p)) for p in _lab_files(registry_dir) if p.name.startswith(f"{base}.v")]


def _read_json(file: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(file).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{file}: not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc

"""Stage 1 of NIWT: the teacher registry, read from ``ModelName-Parameters-Category-BestFeature.csv``.

Each CSV row names a teacher, its size, its category and the features it is best at; the registry
turns that into the contract every later stage reads: per teacher, the capabilities it teaches, the
benchmark and metric that measure each one, and the retention fraction the student must keep.
Rows that cannot be read are quarantined (with the line and the reason), never silently dropped.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from nexa.ledger.lab import DEFAULT_RETAIN_FRACTION
from nexa.ledger.listings import REGISTRY_VERSION, CapabilityContract, TeacherEntry, TeacherRegistry  # the contract later stages read

REQUIRED_COLUMNS = ("ModelName", "Parameters", "Category", "BestFeature")
# What measures a capability when the CSV does not say: (benchmark, metric).
DEFAULT_BENCHMARKS = {
    "reasoning": ("golden-reasoning-eval", "exact_match"),
    "science": ("golden-science-eval", "exact_match"),
    "chemistry": ("golden-chemistry-eval", "exact_match"),
    "math": ("gsm8k", "exact_match"),
    "code": ("humaneval", "pass@1"),
    "knowledge": ("mmlu", "accuracy"),
    "vision": ("mmmu", "accuracy"),
    "voice": ("librispeech", "wer"),
}
_SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}


class RegistryError(ValueError):
    """The CSV or registry file cannot be used at all (missing columns, unreadable, no usable row)."""


def parse_parameters(text: str) -> int:
    """'7B' -> 7_000_000_000, '0.8M' -> 800_000, '1234' -> 1234."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMBT]?)\s*", text.upper())
    if not match:
        raise ValueError(f"Parameters {text!r} is not a number with an optional K/M/B/T suffix")
    return max(1, round(float(match.group(1)) * _SUFFIXES[match.group(2)]))


def split_features(text: str) -> list[str]:
    """'Reasoning; Science' -> ['reasoning', 'science'] (separators ; | , and /)."""
    return [part.strip().lower() for part in re.split(r"[;|,/]", text) if part.strip()]


def row_to_entry(row: dict[str, str], default_retain: float) -> TeacherEntry:
    """One CSV row as a registry entry; optional columns Benchmark, Metric, RetainFraction override defaults."""
    capabilities = []
    for name in split_features(row["BestFeature"]):
        benchmark, metric = DEFAULT_BENCHMARKS.get(name, (None, None))
        benchmark, metric = (row.get("Benchmark") or "").strip() or benchmark, (row.get("Metric") or "").strip() or metric
        if benchmark is None or metric is None:
            raise ValueError(f"capability {name!r} has no default benchmark; add Benchmark and Metric columns "
                             f"(known: {sorted(DEFAULT_BENCHMARKS)})")
        retain = float(row["RetainFraction"]) if (row.get("RetainFraction") or "").strip() else default_retain
        capabilities.append(CapabilityContract(name=name, benchmark=benchmark, metric=metric, retain_fraction=retain))
    return TeacherEntry(name=row["ModelName"].strip(), parameters=parse_parameters(row["Parameters"]),
                        category=row["Category"].strip(), best_feature=row["BestFeature"].strip(), capabilities=capabilities)


def read_teacher_csv(path: Path, default_retain: float = DEFAULT_RETAIN_FRACTION) -> tuple[list[TeacherEntry], list[dict]]:
    """Entries of every good row, and the quarantined ones as {line, row, reason}."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise RegistryError(f"{path}: missing columns {missing}; expected at least {list(REQUIRED_COLUMNS)}")
            rows = list(reader)
    except OSError as error:
        raise RegistryError(f"{path}: cannot read the teacher CSV ({error})") from error
    entries, quarantined, seen = [], [], set()
    for line, row in enumerate(rows, start=2):
        try:
            entry = row_to_entry(row, default_retain)
            if entry.name in seen:
                raise ValueError(f"ModelName {entry.name!r} appears twice")
        except ValueError as error:  # pydantic's ValidationError is a ValueError too
            quarantined.append({"line": line, "row": row, "reason": f"{path}:{line}: {error}"})
            continue
        seen.add(entry.name)
        entries.append(entry)
    return entries, quarantined


def build_registry(csv_path: Path, out: Path, default_retain: float = DEFAULT_RETAIN_FRACTION) -> tuple[TeacherRegistry, list[dict]]:
    """Write the validated registry JSON (and ``<out>.quarantine.jsonl`` when rows were refused)."""
    entries, quarantined = read_teacher_csv(csv_path, default_retain)
    if not entries:
        raise RegistryError(f"{csv_path}: no usable row; reasons: {[q['reason'] for q in quarantined]}")
    registry = TeacherRegistry(source=Path(csv_path).name, teachers=entries)
    write_registry(registry, out)
    quarantine = Path(out).with_suffix(".quarantine.jsonl")
    if quarantined:
        quarantine.write_text("".join(json.dumps(q, sort_keys=True) + "\n" for q in quarantined), encoding="utf-8")
    return registry, quarantined


def write_registry(registry: TeacherRegistry, out: Path) -> None:
    from nexa.ledger.store import atomic_write_bytes

    TeacherRegistry.model_validate(registry.model_dump())
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(out), (json.dumps(registry.model_dump(), indent=2) + "\n").encode("utf-8"))


def load_registry(path: Path) -> TeacherRegistry:
    """Read and validate a registry file; the error names the file and what is wrong."""
    try:
        return TeacherRegistry.model_validate_json(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise RegistryError(f"{path}: cannot read the registry ({error}); build it with `nexa niwt registry`") from error
    except ValueError as error:
        raise RegistryError(f"{path}: not a valid teacher registry (schema_version {REGISTRY_VERSION}): {error}") from error

"""``diff``: which rows one dataset version adds and removes relative to another (as multisets of rows)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from nexa.ledger import Lab
from nexa.ledger.datasets import read_dataset_manifest, read_dataset_rows
from nexa.ledger.hashing import canonical_json


@dataclass
class VersionDiff:
    old: str
    new: str
    added: list[dict[str, Any]]
    removed: list[dict[str, Any]]
    unchanged: int

    def summary(self, samples: int = 3) -> dict[str, Any]:
        return {"old": self.old, "new": self.new, "added": len(self.added), "removed": len(self.removed),
                "unchanged": self.unchanged, "added_samples": self.added[:samples], "removed_samples": self.removed[:samples]}


def diff_versions(lab: Lab, old_ref: str, new_ref: str) -> VersionDiff:
    """Rows are compared by their canonical JSON, so column order and Parquet layout never count as changes."""
    old_manifest, new_manifest = read_dataset_manifest(lab, old_ref), read_dataset_manifest(lab, new_ref)
    old_rows, new_rows = read_dataset_rows(lab, old_manifest.ref), read_dataset_rows(lab, new_manifest.ref)
    old_keys, new_keys = Counter(map(canonical_json, old_rows)), Counter(map(canonical_json, new_rows))
    added_keys, removed_keys = new_keys - old_keys, old_keys - new_keys
    added = _take(new_rows, added_keys)
    removed = _take(old_rows, removed_keys)
    return VersionDiff(old_manifest.ref, new_manifest.ref, added, removed, sum((old_keys & new_keys).values()))


def _take(rows: list[dict[str, Any]], wanted: Counter) -> list[dict[str, Any]]:
    left = Counter(wanted)
    picked = []
    for row in rows:
        key = canonical_json(row)
        if left[key] > 0:
            left[key] -= 1
            picked.append(row)
    return picked

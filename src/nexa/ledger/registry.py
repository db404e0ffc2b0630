"""``registry/datasets.yaml``: dataset id → versions, safe when many processes register at once.

Writers take an OS file lock, re-read the file, change it and replace it atomically, so no entry is
lost and a reader never sees half a file. Registering content that is already a version returns that
version instead of making a new one (idempotent reruns).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock
from pydantic import BaseModel, ConfigDict, Field

from nexa.ledger.errors import ArtifactNotFoundError
from nexa.ledger.lab import YAML_DUMPER, YAML_LOADER
from nexa.ledger.store import atomic_write_bytes

REGISTRY_VERSION = 1
REF_PATTERN = re.compile(r"^(?P<id>[A-Za-z0-9_.\-]+?)(?:@v(?P<version>\d+))?$")


class DatasetVersion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int
    path: str
    hash: str
    rows: int
    manifest: str
    notes: str = ""
    parents: list[str] = Field(default_factory=list)
    created_by: str | None = None


class DatasetRegistry:
    """The lab's dataset registry file and its lock."""

    def __init__(self, registry_dir: str | Path):
        self.path = Path(registry_dir) / "datasets.yaml"
        self._lock = FileLock(str(self.path) + ".lock", timeout=120)

    def register(self, dataset_id: str, **entry: Any) -> DatasetVersion:
        """Add the next version of ``dataset_id`` (or return the existing one with the same hash)."""
        with self._lock:
            data = self._read()
            versions = data["datasets"].setdefault(dataset_id, [])
            for existing in versions:
                if existing["hash"] == entry["hash"]:
                    return DatasetVersion.model_validate(existing)
            version = DatasetVersion(version=len(versions) + 1, **entry)
            versions.append(version.model_dump())
            self._write(data)
            return version

    def next_version(self, dataset_id: str) -> int:
        return len(self._read()["datasets"].get(dataset_id, [])) + 1

    def find_hash(self, dataset_id: str, content_hash: str) -> DatasetVersion | None:
        for entry in self._read()["datasets"].get(dataset_id, []):
            if entry["hash"] == content_hash:
                return DatasetVersion.model_validate(entry)
        return None

    def resolve(self, ref: str) -> tuple[str, DatasetVersion]:
        """``ID`` (latest) or ``ID@vN`` → (id, version entry); unknown refs list what exists."""
        match = REF_PATTERN.match(ref)
        if not match:
            raise ValueError(f"dataset reference {ref!r} is not of the form ID or ID@vN")
        dataset_id = match["id"]
        versions = self._read()["datasets"].get(dataset_id)
        if not versions:
            known = ", ".join(sorted(self._read()["datasets"])) or "none"
            raise ArtifactNotFoundError(f"no dataset {dataset_id!r} in {self.path}; known datasets: {known}")
        if match["version"] is None:
            return dataset_id, DatasetVersion.model_validate(versions[-1])
        wanted = int(match["version"])
        for entry in versions:
            if entry["version"] == wanted:
                return dataset_id, DatasetVersion.model_validate(entry)
        raise ArtifactNotFoundError(f"{dataset_id} has versions {[v['version'] for v in versions]}, not v{wanted}")

    def all(self) -> dict[str, list[DatasetVersion]]:
        return {k: [DatasetVersion.model_validate(v) for v in vs] for k, vs in self._read()["datasets"].items()}

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"schema_version": REGISTRY_VERSION, "datasets": {}}
        data = yaml.load(self.path.read_text(), Loader=YAML_LOADER) or {}
        data.setdefault("schema_version", REGISTRY_VERSION)
        data.setdefault("datasets", {})
        return data

    def _write(self, data: dict[str, Any]) -> None:
        atomic_write_bytes(self.path, yaml.dump(data, Dumper=YAML_DUMPER, sort_keys=True).encode())

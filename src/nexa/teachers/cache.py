"""The teacher-response cache: every answer bought is kept in durable storage, so it is paid for once.

An entry's key is the SHA-256 of (teacher id, messages, generation parameters); nothing secret is in
any of them. Each answer is written the moment it arrives, which makes the cache the checkpoint of a
materialization: a run killed half-way and started again finds the finished prompts here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nexa.ledger.hashing import sha256_json
from nexa.ledger.manifests import dump_manifest, load_manifest, utcnow
from nexa.ledger.store import DurableStore
from nexa.teachers.protocol import TeacherRequest, TeacherResponse

CACHE_VERSION = 1
CACHE_PREFIX = "teacher-cache"


class CacheEntry(BaseModel):
    """One bought answer: what was asked, of whom, what came back and what it cost then."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = CACHE_VERSION
    key: str
    teacher_id: str
    request: dict[str, Any] = Field(description="messages and params, as hashed into the key.")
    response: TeacherResponse
    cost_usd: float = Field(ge=0, description="What this answer cost when it was bought.")
    created_by: str | None = Field(None, description="run_id of the run that paid for it.")
    created_at: datetime = Field(default_factory=utcnow)


class ResponseCache:
    """Lookups and writes of :class:`CacheEntry` files under ``teacher-cache/`` in a durable store."""

    def __init__(self, store: DurableStore, teacher_id: str):
        self.store = store
        self.teacher_id = teacher_id

    def key(self, request: TeacherRequest) -> str:
        return sha256_json({"teacher": self.teacher_id, **request.key_material()})

    def path(self, key: str) -> str:
        return f"{CACHE_PREFIX}/{key[:2]}/{key}.json"

    def get(self, key: str) -> CacheEntry | None:
        """The entry for ``key``, hash-checked and validated, or ``None`` when it was never bought."""
        path = self.path(key)
        if not self.store.exists(path):
            return None
        return load_manifest(CacheEntry, self.store.get_bytes(path), self.store.location(path))

    def put(self, request: TeacherRequest, response: TeacherResponse, cost_usd: float, run_id: str | None) -> CacheEntry:
        """Store a fresh answer; if another run stored this key first, its answer wins and is returned."""
        key = self.key(request)
        entry = CacheEntry(key=key, teacher_id=self.teacher_id, request=request.key_material(), response=response,
                           cost_usd=cost_usd, created_by=run_id)
        try:
            self.store.put_bytes(self.path(key), dump_manifest(entry))
        except FileExistsError:
            existing = self.get(key)
            if existing is None:
                raise
            return existing
        return entry

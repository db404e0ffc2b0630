"""The teacher-response cache: every answer bought is kept in durable storage, so it is paid for once.

An entry's key is the SHA-256 of (teacher id, messages, generation parameters); nothing secret is in
any of them. Answers are stored in shards under ``teacher-cache/<teacher>/``: each batch of answers
the teacher returns is written as one content-addressed shard the moment it arrives (one request on
an object store, where a file per answer cost three per answer and thousands per materialization),
which makes the cache the checkpoint of a materialization: a run killed half-way and started again
finds every finished batch here. A lookup reads the teacher's shards once, in one concurrent batch.
"""

from __future__ import annotations

import re
import threading
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nexa.ledger.hashing import sha256_bytes, sha256_json
from nexa.ledger.manifests import dump_manifest, load_manifest, utcnow
from nexa.ledger.store import DurableStore
from nexa.teachers.protocol import TeacherRequest, TeacherResponse

CACHE_VERSION = 1
SHARD_VERSION = 1
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


class CacheShard(BaseModel):
    """One batch of answers as the teacher returned it; the file is named by its own hash."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SHARD_VERSION
    teacher_id: str
    entries: list[CacheEntry]


Fresh = tuple[TeacherRequest, TeacherResponse, float]  # a request, its answer, what the answer cost


class ResponseCache:
    """Lookups and writes of one teacher's answers, in :class:`CacheShard` blobs under ``teacher-cache/``."""

    def __init__(self, store: DurableStore, teacher_id: str):
        self.store = store
        self.teacher_id = teacher_id
        self.prefix = f"{CACHE_PREFIX}/{sha256_bytes(teacher_id.encode())[:24]}"
        self._entries: dict[str, CacheEntry] | None = None
        self._lock = threading.Lock()  # dispatcher workers write answers concurrently

    def key(self, request: TeacherRequest) -> str:
        return sha256_json({"teacher": self.teacher_id, **request.key_material()})

    def lookup(self, keys) -> dict[str, CacheEntry]:
        """The cached entries among ``keys`` (hash-checked and validated); missing keys are simply absent."""
        entries = self._load()
        return {key: entries[key] for key in keys if key in entries}

    def get(self, key: str) -> CacheEntry | None:
        """The entry for ``key``, or ``None`` when it was never bought."""
        return self.lookup([key]).get(key)

    def put_many(self, fresh: list[Fresh], run_id: str | None) -> list[CacheEntry]:
        """Store a batch of fresh answers as one shard; a key cached first keeps its first answer (returned)."""
        entries = [CacheEntry(key=self.key(request), teacher_id=self.teacher_id, request=request.key_material(),
                              response=response, cost_usd=cost_usd, created_by=run_id) for request, response, cost_usd in fresh]
        known = self._load()
        with self._lock:
            new = {e.key: e for e in entries if e.key not in known}
        if new:
            self.store.put_blob(self.prefix, dump_manifest(CacheShard(teacher_id=self.teacher_id, entries=list(new.values()))))
        with self._lock:
            for key, entry in new.items():
                known.setdefault(key, entry)
            return [known[e.key] for e in entries]

    def put(self, request: TeacherRequest, response: TeacherResponse, cost_usd: float, run_id: str | None) -> CacheEntry:
        """Store one fresh answer; if it was cached first, the cached answer wins and is returned."""
        return self.put_many([(request, response, cost_usd)], run_id)[0]

    def _load(self) -> dict[str, CacheEntry]:
        """Every shard of this teacher, read once; a key in two shards (two runs raced) keeps its earliest answer."""
        with self._lock:
            if self._entries is None:
                entries: dict[str, CacheEntry] = {}
                for key, data in sorted(self.store.get_blobs(self.prefix).items()):
                    for entry in load_manifest(CacheShard, data, self.store.location(key)).entries:
                        if entry.key not in entries or entry.created_at < entries[entry.key].created_at:
                            entries[entry.key] = entry
                for entry in self._migrate_legacy(entries):
                    entries.setdefault(entry.key, entry)
                self._entries = entries
            return self._entries

    def _migrate_legacy(self, known: dict[str, CacheEntry]) -> list[CacheEntry]:
        """This teacher's answers from the per-answer layout (``teacher-cache/<k[:2]>/<k>.json``, before shards).

        They were paid for, so they are read (hash-checked), written into one shard and only then removed.
        Only ``teacher-cache/`` itself is listed (non-recursively: one request on S3, however many shards
        there are) and then only its two-hex-digit legacy folders, so a lab without them pays one small listing.
        """
        folders = [key for key in self.store.children(CACHE_PREFIX) if _LEGACY_FOLDER.fullmatch(key)]
        legacy = [key for folder in folders for key in self.store.list(folder) if _LEGACY_NAME.fullmatch(key)]
        found = [load_manifest(CacheEntry, self.store.get_bytes(key), self.store.location(key)) for key in legacy]
        mine = [(key, entry) for key, entry in zip(legacy, found) if entry.teacher_id == self.teacher_id]
        if not mine:
            return []
        new = [entry for _, entry in mine if entry.key not in known]
        if new:
            self.store.put_blob(self.prefix, dump_manifest(CacheShard(teacher_id=self.teacher_id, entries=new)))
        for key, _ in mine:
            self.store.delete(key)
        return [entry for _, entry in mine]


_LEGACY_FOLDER = re.compile(rf"{CACHE_PREFIX}/[0-9a-f]{{2}}")
_LEGACY_NAME = re.compile(rf"{CACHE_PREFIX}/[0-9a-f]{{2}}/[0-9a-f]{{64}}\.json")

"""Generation cache in durable storage, keyed by (model hash, prompt hash, generation parameters).

Entries for one (model, parameters) pair live in immutable, content-addressed shard blobs under
``eval-cache/<model>/<params>/``; a lookup reads the shards in one batch and merges them, and a batch
of new generations is written as one new shard, so an eval of hundreds of prompts costs one write,
and a rerun with nothing changed generates nothing.
"""

from __future__ import annotations

import json

from nexa.eval.generate import Generation
from nexa.ledger.hashing import sha256_bytes, sha256_json
from nexa.ledger.store import DurableStore


def prompt_hash(prompt: str) -> str:
    return sha256_bytes(prompt.encode("utf-8"))


class GenerationCache:
    """Cached generations of one model under one set of generation parameters."""

    def __init__(self, store: DurableStore, model_sha256: str, params: dict):
        self.store = store
        self.prefix = f"eval-cache/{model_sha256[:24]}/{sha256_json(params)[:24]}"
        self._entries: dict[str, dict] | None = None
        self.hits = 0
        self.misses = 0

    def _load(self) -> dict[str, dict]:
        if self._entries is None:
            self._entries = {}
            for _, data in sorted(self.store.get_blobs(self.prefix).items()):
                self._entries.update(json.loads(data))
        return self._entries

    def lookup(self, prompts: list[str]) -> tuple[dict[str, Generation], list[str]]:
        """Cached generations by prompt, and the prompts (deduplicated, in order) still to generate."""
        entries = self._load()
        found, missing = {}, []
        for prompt in dict.fromkeys(prompts):
            entry = entries.get(prompt_hash(prompt))
            if entry is None:
                missing.append(prompt)
            else:
                found[prompt] = Generation(prompt, entry["output"], entry["latency_ms"], entry["new_tokens"],
                                           entry.get("confidence"), entry.get("abstained", False))
        self.hits += len(found)
        self.misses += len(missing)
        return found, missing

    def save(self, generations: list[Generation]) -> None:
        """Write new generations as one shard named by its content hash (idempotent)."""
        if not generations:
            return
        shard = {prompt_hash(g.prompt): _entry(g) for g in generations}
        data = json.dumps(shard, sort_keys=True).encode()
        self.store.put_blob(self.prefix, data)
        self._load().update(shard)


def _entry(generation: Generation) -> dict:
    """A cache entry; a gated bundle's confidence and verdict are kept only where there is a gate."""
    entry = {"output": generation.output, "latency_ms": generation.latency_ms, "new_tokens": generation.new_tokens}
    if generation.confidence is not None:
        entry.update(confidence=generation.confidence, abstained=generation.abstained)
    return entry


def cached_generate(generator, cache: GenerationCache, prompts: list[str], max_new_tokens: int,
                    capability: str | None = None) -> list[Generation]:
    """Generations for ``prompts`` in order, generating only those the cache does not hold."""
    found, missing = cache.lookup(prompts)
    fresh = generator.generate(missing, max_new_tokens, capability)
    cache.save(fresh)
    found.update({g.prompt: g for g in fresh})
    return [found[p] for p in prompts]

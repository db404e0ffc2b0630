"""The response cache: keyed by teacher, messages and parameters; hash-checked; first answer wins."""

from __future__ import annotations

import pytest

from nexa.ledger import CorruptArtifactError, Lab
from nexa.teachers.cache import ResponseCache
from nexa.teachers.protocol import GenerationParams, TeacherRequest, TeacherResponse
from s3_server import new_bucket, s3  # noqa: F401 - s3 is a fixture


@pytest.fixture
def cache(tmp_path) -> ResponseCache:
    return ResponseCache(Lab.init(tmp_path / "lab").durable(), "openai-compatible:chat:http://h/v1#m")


def _answer(text: str) -> TeacherResponse:
    return TeacherResponse(text=text, input_tokens=3, output_tokens=len(text), latency_ms=1.5)


def test_key_changes_with_teacher_messages_and_every_parameter(cache):
    base = TeacherRequest.from_prompt("hi", GenerationParams())
    keys = {
        cache.key(base),
        cache.key(TeacherRequest.from_prompt("hi!", GenerationParams())),
        cache.key(TeacherRequest.from_prompt("hi", GenerationParams(), system="s")),
        cache.key(TeacherRequest.from_prompt("hi", GenerationParams(max_tokens=9))),
        cache.key(TeacherRequest.from_prompt("hi", GenerationParams(top_logprobs=1))),
        ResponseCache(cache.store, "other-teacher").key(base),
    }
    assert len(keys) == 6
    assert cache.key(base) == cache.key(TeacherRequest.from_prompt("hi", GenerationParams()))


def test_round_trip_and_the_first_answer_wins(cache):
    request = TeacherRequest.from_prompt("hi", GenerationParams())
    key = cache.key(request)
    assert cache.get(key) is None
    stored = cache.put(request, _answer("first"), cost_usd=0.5, run_id="r1")
    again = cache.put(request, _answer("second"), cost_usd=0.7, run_id="r2")
    assert again.response.text == "first" and again.created_by == "r1"
    loaded = cache.get(key)
    assert loaded.response == stored.response and loaded.cost_usd == 0.5
    assert loaded.request["messages"] == [{"role": "user", "content": "hi"}]


def test_a_tampered_entry_is_refused(cache):
    request = TeacherRequest.from_prompt("hi", GenerationParams())
    cache.put(request, _answer("ok"), cost_usd=0.0, run_id=None)
    [path] = cache.store.local_path(cache.prefix).glob("*.json")
    path.write_text(path.read_text().replace('"ok"', '"KO"'))
    with pytest.raises(CorruptArtifactError, match="hash mismatch"):
        ResponseCache(cache.store, cache.teacher_id).get(cache.key(request))


def test_a_batch_is_one_shard_and_a_fresh_reader_finds_every_answer(cache):
    requests = [TeacherRequest.from_prompt(f"q{i}", GenerationParams()) for i in range(5)]
    cache.put_many([(r, _answer(f"a{i}"), 0.1) for i, r in enumerate(requests)], run_id="r1")
    cache.put_many([(requests[0], _answer("late"), 0.2), (requests[4], _answer("late"), 0.2)], run_id="r2")  # all cached: no shard
    assert len(list(cache.store.local_path(cache.prefix).glob("*.json"))) == 1
    reader = ResponseCache(cache.store, cache.teacher_id)
    found = reader.lookup([cache.key(r) for r in requests] + ["0" * 64])
    assert [found[cache.key(r)].response.text for r in requests] == [f"a{i}" for i in range(5)]
    assert ResponseCache(cache.store, "other-teacher").lookup(found) == {}


def test_answers_bought_under_the_per_answer_layout_are_moved_into_a_shard_not_bought_again(cache):
    """A lab cached before shards keeps what it paid for: read once, written as a shard, then the old files go."""
    from nexa.ledger.manifests import dump_manifest
    from nexa.teachers.cache import CacheEntry

    request = TeacherRequest.from_prompt("old", GenerationParams())
    key = cache.key(request)
    mine = CacheEntry(key=key, teacher_id=cache.teacher_id, request=request.key_material(), response=_answer("paid"),
                      cost_usd=0.25, created_by="r0")
    other = ResponseCache(cache.store, "another-teacher")
    theirs = CacheEntry(key=other.key(request), teacher_id="another-teacher", request=request.key_material(),
                        response=_answer("theirs"), cost_usd=0.1)
    for entry in (mine, theirs):
        cache.store.put_bytes(f"teacher-cache/{entry.key[:2]}/{entry.key}.json", dump_manifest(entry))
    assert cache.get(key).response.text == "paid" and cache.get(key).cost_usd == 0.25
    assert not cache.store.exists(f"teacher-cache/{key[:2]}/{key}.json")  # moved, not copied
    assert cache.store.exists(f"teacher-cache/{theirs.key[:2]}/{theirs.key}.json")  # another teacher's stays for it
    fresh = ResponseCache(cache.store, cache.teacher_id)
    assert fresh.get(key).response.text == "paid"  # from the shard now
    assert other.get(theirs.key).response.text == "theirs"


def test_opening_a_cache_never_walks_the_shards_of_any_teacher(cache, monkeypatch):
    """The legacy check lists ``teacher-cache/`` one level deep, not every shard below it (a paged listing on S3)."""
    for i in range(3):
        ResponseCache(cache.store, f"teacher-{i}").put(TeacherRequest.from_prompt("q", GenerationParams()), _answer("a"), 0.1, "r")
    walked: list[str] = []
    real_list = cache.store.list
    monkeypatch.setattr(cache.store, "list", lambda prefix: walked.append(prefix) or real_list(prefix))
    assert ResponseCache(cache.store, "teacher-1").get(cache.key(TeacherRequest.from_prompt("q", GenerationParams()))) is None
    mine = ResponseCache(cache.store, "teacher-2")
    assert mine.lookup([mine.key(TeacherRequest.from_prompt("q", GenerationParams()))])
    assert "teacher-cache" not in walked and all(p.startswith("teacher-cache/") and len(p) > len("teacher-cache/xx") for p in walked)


def test_legacy_answers_on_s3_move_into_a_shard_and_the_next_open_lists_one_level(s3):
    """On a real S3 API: the migration still finds per-answer files, and once they are gone an open lists no shard."""
    from nexa.ledger.manifests import dump_manifest
    from nexa.ledger.store import DurableStore
    from nexa.teachers.cache import CacheEntry

    store = DurableStore(new_bucket() + "/durable")
    cache = ResponseCache(store, "openai-compatible:chat:http://h/v1#m")
    request = TeacherRequest.from_prompt("old", GenerationParams())
    key = cache.key(request)
    entry = CacheEntry(key=key, teacher_id=cache.teacher_id, request=request.key_material(), response=_answer("paid"), cost_usd=0.5)
    store.put_bytes(f"teacher-cache/{key[:2]}/{key}.json", dump_manifest(entry))
    assert cache.get(key).response.text == "paid" and not store.exists(f"teacher-cache/{key[:2]}/{key}.json")
    fresh = ResponseCache(store, cache.teacher_id)
    walked: list[str] = []
    real_list = store.list
    store.list = lambda prefix: walked.append(prefix) or real_list(prefix)
    assert fresh.get(key).cost_usd == 0.5 and walked == [fresh.prefix]  # only its own shards; no legacy folder is left

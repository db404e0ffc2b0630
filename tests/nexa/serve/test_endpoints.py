"""Every endpoint of the server answers in the OpenAI shape, with the text nexus itself would generate."""

from __future__ import annotations

import json

import pytest

from nexus import NexusModel

SCIENCE = "7 km in m?"
REASONING = "max(3,14)="
LONG = "12 km in m?"  # the plain backbone answers it with several digits


@pytest.fixture(scope="module")
def model(bundle):
    return NexusModel.load(bundle)


def _complete(client, **body):
    reply = client.post("/v1/completions", json={"model": "tiny", **body})
    assert reply.status_code == 200, reply.text
    return reply.json()


def _sse_events(reply) -> list:
    lines = [line for line in reply.text.split("\n") if line]
    assert all(line.startswith("data: ") for line in lines), lines
    payloads = [line[len("data: "):] for line in lines]
    assert payloads[-1] == "[DONE]"
    return [json.loads(p) for p in payloads[:-1]]


def test_healthz_and_models(client):
    assert client.get("/healthz").json() == {"status": "ok", "bundle": "tiny"}
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["tiny", "tiny:reasoning", "tiny:science"]


def test_completion_shape_and_text_match_nexus(client, model):
    data = _complete(client, prompt=SCIENCE, max_tokens=5)
    assert data["object"] == "text_completion" and data["id"].startswith("cmpl-") and isinstance(data["created"], int)
    choice = data["choices"][0]
    assert set(choice) >= {"index", "text", "finish_reason"} and choice["index"] == 0
    expected = model.complete_batch([SCIENCE], max_new_tokens=5)[0]
    assert choice["text"] == expected.text
    assert choice["finish_reason"] == expected.finish_reason
    usage = data["usage"]
    assert usage["prompt_tokens"] == expected.prompt_tokens == len(model.tokenizer.encode(SCIENCE).ids)
    assert usage["completion_tokens"] == expected.completion_tokens
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_router_picks_capability_when_model_is_the_bundle(client, model):
    assert _complete(client, prompt=SCIENCE)["model"] == f"tiny:{model.route(SCIENCE)}" == "tiny:science"
    assert _complete(client, prompt=REASONING)["model"] == "tiny:reasoning"


@pytest.mark.parametrize("capability", ["reasoning", "science"])
def test_model_name_selects_capability(client, model, capability):
    by_name = client.post("/v1/completions", json={"model": f"tiny:{capability}", "prompt": SCIENCE}).json()
    by_field = _complete(client, prompt=SCIENCE, capability=capability)
    assert by_name["model"] == by_field["model"] == f"tiny:{capability}"
    assert by_name["choices"][0]["text"] == by_field["choices"][0]["text"] == model.generate(SCIENCE, capability)


def test_adapter_changes_the_answer(client):
    # the science adapter is a random LoRA: a forced capability must really switch adapters
    texts = {c: _complete(client, prompt=SCIENCE, capability=c, max_tokens=12)["choices"][0]["text"]
             for c in ("reasoning", "science")}
    assert texts["reasoning"] != texts["science"]


def test_batch_of_prompts_keeps_order(client, model):
    data = _complete(client, prompt=[REASONING, SCIENCE], max_tokens=4)
    assert [c["index"] for c in data["choices"]] == [0, 1]
    assert [c["text"] for c in data["choices"]] == model.generate_batch([REASONING, SCIENCE], max_new_tokens=4)


def test_stop_string_cuts_the_text(client, model):
    full = model.generate(LONG, "reasoning", max_new_tokens=12)
    assert len(full) >= 3
    stop = full[2]
    data = _complete(client, prompt=LONG, capability="reasoning", max_tokens=12, stop=["zz", stop])
    assert data["choices"][0]["text"] == full[: full.index(stop)]
    assert data["choices"][0]["finish_reason"] == "stop"


def test_sampling_is_seeded(client):
    body = {"prompt": SCIENCE, "max_tokens": 12, "temperature": 1.5, "top_p": 0.95}
    first = [_complete(client, seed=s, **body)["choices"][0]["text"] for s in (1, 1, 2, 3, 4)]
    assert first[0] == first[1]
    assert len(set(first)) > 1  # different seeds sample different answers


def test_chat_uses_last_user_message(client, model):
    messages = [{"role": "system", "content": "be terse"}, {"role": "user", "content": REASONING},
                {"role": "assistant", "content": "14"}, {"role": "user", "content": SCIENCE}]
    reply = client.post("/v1/chat/completions", json={"model": "tiny", "messages": messages, "max_tokens": 5})
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert data["object"] == "chat.completion" and data["id"].startswith("chatcmpl-")
    message = data["choices"][0]["message"]
    assert message == {"role": "assistant", "content": model.generate(SCIENCE, max_new_tokens=5)}
    assert data["usage"]["prompt_tokens"] == len(model.tokenizer.encode(SCIENCE).ids)


def test_completion_stream_joins_to_the_full_text(client, model):
    with client.stream("POST", "/v1/completions", json={"model": "tiny:reasoning", "prompt": LONG,
                                                        "max_tokens": 10, "stream": True}) as reply:
        reply.read()
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
    events = _sse_events(reply)
    assert all(e["object"] == "text_completion" and e["model"] == "tiny:reasoning" for e in events)
    full = model.generate(LONG, "reasoning", 10)
    assert "".join(e["choices"][0]["text"] for e in events) == full
    assert len(events) == len(full) + 1  # one chunk per character (char-level tokenizer), then the finish chunk
    assert events[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert all(e["choices"][0]["finish_reason"] is None for e in events[:-1])


def test_chat_stream_with_stop_and_usage(client, model):
    full = model.generate(LONG, "reasoning", max_new_tokens=12)
    assert len(full) >= 4
    stop = full[2:4]
    body = {"model": "tiny:reasoning", "messages": [{"role": "user", "content": LONG}], "max_tokens": 12, "stream": True,
            "stop": stop, "stream_options": {"include_usage": True}}
    reply = client.post("/v1/chat/completions", json=body)
    assert reply.status_code == 200, reply.text
    events = _sse_events(reply)
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
    assert text == full[: full.index(stop)]
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    usage = events[-1]["usage"]
    assert events[-1]["choices"] == [] and usage["completion_tokens"] == len(text)
    assert usage["total_tokens"] == usage["prompt_tokens"] + len(text)


def test_status_reports_bundle_and_counts_requests(client):
    before = client.get("/api/status").json()
    _complete(client, prompt=SCIENCE, max_tokens=2)
    after = client.get("/api/status").json()
    assert after["bundle"] == "tiny" and after["capabilities"] == ["reasoning", "science"]
    assert after["retention"] == {"reasoning": 0.99, "science": 1.0}
    assert after["requests_served"] == before["requests_served"] + 1
    assert after["uptime_s"] >= before["uptime_s"] >= 0
    assert after["context_tokens"] == 64 and after["max_tokens_cap"] == 40

"""/metrics counts requests by route and status, errors, latency and tokens, in a registry of its own per app."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from nexa.serve.app import create_app


def _samples(client) -> dict:
    reply = client.get("/metrics")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(reply.text) for s in family.samples}


def _value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_increase(client):
    before = _samples(client)
    ok = client.post("/v1/completions", json={"model": "tiny:reasoning", "prompt": "max(1,2)=", "max_tokens": 4}).json()
    client.post("/v1/chat/completions", json={"model": "tiny:reasoning", "max_tokens": 4,
                                              "messages": [{"role": "user", "content": "max(4,9)="}]})
    client.post("/v1/completions", json={"model": "tiny", "prompt": "x", "max_tokens": 10 ** 6})
    client.post("/v1/completions", content=b"{")
    after = _samples(client)

    def delta(name, **labels):
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("nexa_serve_requests_total", route="/v1/completions", status="200") == 1
    assert delta("nexa_serve_requests_total", route="/v1/chat/completions", status="200") == 1
    assert delta("nexa_serve_requests_total", route="/v1/completions", status="400") == 2  # huge max_tokens, bad JSON
    assert delta("nexa_serve_errors_total", route="/v1/completions", type="invalid_request_error") == 1
    assert delta("nexa_serve_errors_total", route="/v1/completions", type="invalid_json") == 1
    assert delta("nexa_serve_request_seconds_count", route="/v1/completions") == 3
    assert delta("nexa_serve_request_seconds_sum", route="/v1/completions") > 0
    generated = delta("nexa_serve_generated_tokens_total", capability="reasoning")
    assert generated >= ok["usage"]["completion_tokens"] and generated > 0
    assert delta("nexa_serve_prompt_tokens_total", capability="reasoning") >= ok["usage"]["prompt_tokens"]


def test_streamed_tokens_are_counted(client):
    before = _samples(client)
    reply = client.post("/v1/completions", json={"model": "tiny:reasoning", "prompt": "12 km in m?", "max_tokens": 6,
                                                 "stream": True, "stream_options": {"include_usage": True}})
    usage = [line for line in reply.text.splitlines() if '"usage"' in line]
    assert reply.status_code == 200 and len(usage) == 1
    after = _samples(client)
    generated = _value(after, "nexa_serve_generated_tokens_total", capability="reasoning") - \
        _value(before, "nexa_serve_generated_tokens_total", capability="reasoning")
    assert generated == int(usage[0].split('"completion_tokens": ')[1].split(",")[0]) > 0
    assert _value(after, "nexa_serve_request_seconds_count", route="/v1/completions") == \
        _value(before, "nexa_serve_request_seconds_count", route="/v1/completions") + 1


def test_each_app_has_its_own_registry(bundle, client):
    with TestClient(create_app(bundle)) as fresh:
        samples = _samples(fresh)
        assert _value(samples, "nexa_serve_requests_total", route="/v1/completions", status="200") == 0
    assert _value(_samples(client), "nexa_serve_requests_total", route="/metrics", status="200") >= 1

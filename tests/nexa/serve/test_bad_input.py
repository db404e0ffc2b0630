"""Bad input gets the promised 4xx with a message that names the problem; never a 500."""

from __future__ import annotations

import json
import shutil

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from nexa.bundle.build import write_manifest
from nexa.serve.app import create_app

from serve_token import TOKEN

OK = {"model": "tiny", "prompt": "7 km in m?"}


def _error(reply, status: int) -> dict:
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["code"] == status and error["message"]
    return error


def test_bad_json_is_400(client):
    reply = client.post("/v1/completions", content=b'{"model": "tiny", "prompt": ', headers={"content-type": "application/json"})
    assert "not valid JSON" in _error(reply, 400)["message"]


@pytest.mark.parametrize("patch, field", [
    ({"max_tokens": "ten"}, "max_tokens"),
    ({"max_tokens": "5"}, "max_tokens"),  # strict: no silent coercion of strings
    ({"prompt": 5}, "prompt"),
    ({"temperature": "hot"}, "temperature"),
    ({"stop": [1, 2]}, "stop"),
    ({"stream": "yes"}, "stream"),
    ({"logprobs": True}, "logprobs"),  # completions take an int
    ({"echo": "yes"}, "echo"),
])
def test_wrong_types_are_400_naming_the_field(client, patch, field):
    error = _error(client.post("/v1/completions", json={**OK, **patch}), 400)
    assert field in error["message"]


@pytest.mark.parametrize("patch, words", [
    ({"temperature": -1.0}, "temperature"),
    ({"top_p": 0.0}, "top_p"),
    ({"max_tokens": 0}, "echo"),
    ({"max_tokens": -1}, "max_tokens"),
    ({"n": 65}, "n"),
    ({"n": 2, "stream": True}, "n = 1"),
    ({"logprobs": 6}, "logprobs"),
    ({"max_tokens": 3, "max_completion_tokens": 4}, "disagree"),
    ({"prompt": [[1, 2]] * 40, "n": 2}, "prompts x n"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"prompt": []}, "empty"),
    ({"prompt": ["1"] * 65}, "too many"),
    ({"seed": 2 ** 70}, "seed"),
    ({"seed": -1}, "seed"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"prompt": ["a", "b"], "stream": True}, "single prompt"),
])
def test_unsupported_or_out_of_range_values_are_400(client, patch, words):
    assert words in _error(client.post("/v1/completions", json={**OK, **patch}), 400)["message"]


def test_body_that_is_not_an_object_is_400(client):
    _error(client.post("/v1/completions", json=["not", "an", "object"]), 400)


def test_huge_max_tokens_is_400_naming_the_cap(client):
    message = _error(client.post("/v1/completions", json={**OK, "max_tokens": 100000}), 400)["message"]
    assert "cap of 40" in message and "--max-tokens-cap" in message


def test_prompt_too_long_for_the_context_is_400(client):
    message = _error(client.post("/v1/completions", json={**OK, "prompt": "1" * 60, "max_tokens": 10}), 400)["message"]
    assert "context of 64 tokens" in message


def test_too_long_stream_is_400_before_any_chunk(client):
    body = {**OK, "prompt": "1" * 60, "max_tokens": 10, "stream": True}
    _error(client.post("/v1/completions", json=body), 400)


def test_body_too_large_is_413(client):
    big = json.dumps({**OK, "prompt": "x" * 5000}).encode()
    assert "4096" in _error(client.post("/v1/completions", content=big), 413)["message"]

    def chunks():  # no Content-Length: the limit is enforced while reading
        yield big[:3000]
        yield big[3000:]

    _error(client.post("/v1/completions", content=chunks()), 413)


@pytest.mark.parametrize("body, status, words", [
    ({**OK, "model": "gpt-4"}, 404, "tiny:science"),
    ({**OK, "model": "tiny:poetry"}, 404, "['reasoning', 'science']"),
    ({**OK, "model": "tiny:"}, 404, "tiny:reasoning"),
    ({**OK, "capability": "poetry"}, 404, "['reasoning', 'science']"),
    ({**OK, "model": "tiny:science", "capability": "reasoning"}, 400, "agree"),
])
def test_unknown_model_or_capability(client, body, status, words):
    assert words in _error(client.post("/v1/completions", json=body), status)["message"]


@pytest.mark.parametrize("messages, words", [
    ([], "messages"),
    ([{"role": "system", "content": "hi"}], "role 'user'"),
    ([{"role": "user", "content": [{"type": "text", "text": "hi"}]}], "content"),
    ([{"role": "wizard", "content": "hi"}], "role"),
])
def test_bad_chat_messages_are_400(client, messages, words):
    reply = client.post("/v1/chat/completions", json={"model": "tiny", "messages": messages})
    assert words in _error(reply, 400)["message"]


def test_unknown_route_and_method_are_json_errors(client):
    _error(client.get("/v1/engines"), 404)
    _error(client.get("/v1/completions"), 405)


def test_auth_required_when_token_configured(secured):
    missing = secured.post("/v1/completions", json=OK)
    _error(missing, 401)
    assert missing.headers["www-authenticate"].startswith("Bearer")
    _error(secured.post("/v1/completions", json=OK, headers={"Authorization": f"Bearer {TOKEN}x"}), 401)
    _error(secured.post("/v1/completions", json=OK, headers={"Authorization": f"Basic {TOKEN}"}), 401)
    for path in ("/v1/models", "/api/status", "/metrics"):
        _error(secured.get(path), 401)
    assert secured.get("/healthz").status_code == 200  # liveness stays open
    ok = secured.post("/v1/completions", json=OK, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json()["choices"][0]["text"] is not None


def test_auth_is_checked_before_the_body(secured):
    _error(secured.post("/v1/completions", content=b"{not json"), 401)


@pytest.fixture(scope="module")
def uncensored_bundle(bundle, tmp_path_factory):
    """The tiny bundle re-manifested with the explicit uncensored opt-in and an 'uncensored' capability."""
    target = tmp_path_factory.mktemp("uncensored") / "bundle"
    shutil.copytree(bundle, target)
    write_manifest(target, capabilities=["reasoning", "science", "uncensored"], safety={"uncensored": True})
    return target


def test_uncensored_needs_the_explicit_flag(uncensored_bundle):
    with TestClient(create_app(uncensored_bundle)) as opted_in:
        body = {**OK, "model": "tiny:uncensored", "max_tokens": 3}
        assert "enable_uncensored" in _error(opted_in.post("/v1/completions", json=body), 403)["message"]
        assert _error(opted_in.post("/v1/completions", json={**body, "stream": True}), 403)["type"] == "safety_error"
        assert opted_in.post("/v1/completions", json={**body, "enable_uncensored": True}).status_code == 200


def test_standard_bundle_has_no_uncensored_capability(client):
    body = {**OK, "model": "tiny:uncensored", "enable_uncensored": True}
    _error(client.post("/v1/completions", json=body), 404)


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats(allow_nan=False, allow_infinity=False)
                     | st.text(max_size=80),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                     max_leaves=6)
_FIELDS = ["model", "prompt", "messages", "max_tokens", "temperature", "top_p", "seed", "stop", "n", "stream",
           "capability", "logprobs", "stream_options", "enable_uncensored", "echo", "user"]
_VALUES = {"model": st.sampled_from(["tiny", "tiny:science", "tiny:reasoning", "tiny:", "x"]) | _JSON,
           "max_tokens": st.integers(-3, 60) | _JSON, "prompt": st.text(max_size=70) | _JSON,
           "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "bot"]),
                                                       "content": st.text(max_size=70) | _JSON}), max_size=3) | _JSON}


@st.composite
def _bodies(draw, chat: bool):
    """A valid body with up to three fields replaced by random (often wrong) values."""
    text = draw(st.text(max_size=50))
    body = {"model": "tiny", "max_tokens": draw(st.integers(1, 8))}
    body.update({"messages": [{"role": "user", "content": text}]} if chat else {"prompt": text})
    for key in draw(st.lists(st.sampled_from(_FIELDS), unique=True, max_size=3)):
        body[key] = draw(_VALUES.get(key, _JSON))
    return body


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), chat=st.booleans())
def test_random_bodies_never_get_a_500(client, data, chat):
    body = data.draw(_bodies(chat))
    reply = client.post("/v1/chat/completions" if chat else "/v1/completions", json=body)
    event(f"status {reply.status_code}")
    assert reply.status_code in (200, 400, 403, 404, 413, 400), (reply.status_code, reply.text, body)
    if reply.status_code != 200:
        assert reply.json()["error"]["message"]


@pytest.mark.parametrize("raw", [b'{"model": "tiny", "prompt": "max(1,2)=", "temperature": Infinity}',
                                 b'{"model": "tiny", "prompt": "max(1,2)=", "top_p": NaN}',
                                 b'{"model": "tiny", "prompt": "max(1,2)=", "max_tokens": -Infinity}'])
def test_non_finite_numbers_are_a_4xx_not_a_500(client, raw):
    reply = client.post("/v1/completions", content=raw, headers={"content-type": "application/json"})
    assert 400 <= reply.status_code < 500, (reply.status_code, reply.text)

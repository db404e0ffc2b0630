"""nexa serve through the official OpenAI SDK on a real socket: logprobs, echo (prompt log-likelihoods),
token-id prompts, n, seed, stop, max_completion_tokens, GET /v1/models/{id}, 400s in OpenAI's shape, a 413
for a 20 MB body and unknown fields ignored."""

from __future__ import annotations

import math

import httpx
import openai
import pytest

from nexa.serve.background import serving


@pytest.fixture(scope="module")
def sdk(bundle):
    with serving(bundle, max_tokens_cap=40) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0), url


def test_echo_with_max_tokens_0_scores_the_prompt(sdk):
    client, _ = sdk
    reply = client.completions.create(model="tiny:reasoning", prompt="max(3,14)=14", max_tokens=0, echo=True, logprobs=2)
    choice = reply.choices[0]
    assert choice.text == "max(3,14)=14" and choice.finish_reason == "length"
    lp = choice.logprobs
    assert lp.tokens[0] == "<s>" and "".join(lp.tokens[1:]) == "max(3,14)=14"
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert all(v <= 0 for v in lp.token_logprobs[1:]) and len(lp.token_logprobs) == 13
    assert all(len(top) == 2 and max(top.values()) >= v - 1e-6 for top, v in zip(lp.top_logprobs[1:], lp.token_logprobs[1:]))
    assert lp.text_offset[1] == 3 and lp.text_offset[-1] == 3 + 11  # after "<s>"
    assert reply.usage.prompt_tokens == 13 and reply.usage.completion_tokens == 0


def test_generated_logprobs_match_echo_scores(sdk):
    """A greedy completion's logprobs equal the same tokens scored through echo (one definition of both)."""
    client, _ = sdk
    made = client.completions.create(model="tiny:science", prompt="7 km in m?", max_tokens=4, logprobs=1)
    text, lp = made.choices[0].text, made.choices[0].logprobs
    assert "".join(lp.tokens).startswith(text) and len(lp.tokens) >= len(text)
    assert all(math.isclose(v, max(t.values()), abs_tol=1e-5) for v, t in zip(lp.token_logprobs, lp.top_logprobs))  # greedy
    scored = client.completions.create(model="tiny:science", prompt="7 km in m?" + text, max_tokens=0, echo=True, logprobs=0)
    tail = scored.choices[0].logprobs.token_logprobs[-len(text):] if text else []
    assert tail == pytest.approx(lp.token_logprobs[:len(text)], abs=1e-4)


def test_token_id_prompts_are_used_as_given(sdk):
    client, url = sdk
    ids = httpx.post(f"{url}/tokenize", json={"prompt": "max(2,35)=", "add_special_tokens": True}).json()["tokens"]
    assert ids[0] == 1 and httpx.post(f"{url}/detokenize", json={"tokens": ids[1:]}).json()["prompt"] == "max(2,35)="
    by_text = client.completions.create(model="tiny", prompt="max(2,35)=", max_tokens=5)
    by_ids = client.completions.create(model="tiny", prompt=[ids, ids], max_tokens=5)
    assert [c.text for c in by_ids.choices] == [by_text.choices[0].text] * 2
    assert httpx.get(f"{url}/tokenizer_info").json()["eos_token"] == "</s>"


def test_n_seed_and_stop(sdk):
    client, _ = sdk
    first = client.completions.create(model="tiny:reasoning", prompt="max(1,2)=", max_tokens=6, n=3, temperature=1.5, seed=7)
    again = client.completions.create(model="tiny:reasoning", prompt="max(1,2)=", max_tokens=6, n=3, temperature=1.5, seed=7)
    assert [c.index for c in first.choices] == [0, 1, 2]
    assert [c.text for c in first.choices] == [c.text for c in again.choices]
    for seed in range(20):  # the first seed whose sample is long enough to cut
        sampled = dict(model="tiny:reasoning", prompt="max(1,2)=", max_tokens=6, temperature=2.0, seed=seed)
        full = client.completions.create(**sampled).choices[0].text
        if len(full) >= 3 and full[2] not in full[:2]:
            break
    assert len(full) >= 3, full
    cut = client.completions.create(**sampled, stop=[full[2]]).choices[0]
    assert cut.text == full[:full.index(full[2])] and cut.finish_reason == "stop"


def test_chat_logprobs_and_max_completion_tokens(sdk):
    client, _ = sdk
    reply = client.chat.completions.create(model="tiny:reasoning", messages=[{"role": "user", "content": "max(4,9)="}],
                                           max_completion_tokens=4, logprobs=True, top_logprobs=3)
    choice = reply.choices[0]
    assert reply.usage.completion_tokens <= 4
    assert "".join(t.token for t in choice.logprobs.content) == choice.message.content
    assert all(len(t.top_logprobs) == 3 and t.logprob <= 0 for t in choice.logprobs.content)


def test_bad_bodies_are_400_in_openais_shape_and_unknown_fields_are_ignored(sdk):
    client, url = sdk
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="tiny", prompt="x", temperature=7.0)
    assert caught.value.status_code == 400
    error = caught.value.body
    assert set(error) >= {"message", "type", "param", "code"} and error["param"] == "temperature"
    ok = client.completions.create(model="tiny", prompt="max(1,2)=", max_tokens=2, extra_body={"not_an_openai_field": 1})
    assert ok.choices[0].text is not None


def test_retrieve_model(sdk):
    client, _ = sdk
    assert client.models.retrieve("tiny:science").id == "tiny:science"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4")


def test_20_mb_body_gets_413_not_a_reset(sdk):
    _, url = sdk
    reply = httpx.post(f"{url}/v1/completions", content=b'{"model": "tiny", "prompt": "' + b"x" * (20 << 20) + b'"}',
                       headers={"content-type": "application/json"}, timeout=60)
    assert reply.status_code == 413 and reply.json()["error"]["type"] == "request_too_large"

"""Streaming with logprobs through the official OpenAI SDK, as OpenAI does it: each chunk carries the
log-probabilities of the tokens it shows, and together they equal the non-streamed answer's logprobs."""

from __future__ import annotations

import openai
import pytest

from nexa.serve.background import serving

LONG = "12 km in m?"


@pytest.fixture(scope="module")
def sdk(bundle):
    with serving(bundle, max_tokens_cap=40) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def test_completion_stream_with_logprobs_equals_the_whole_answer(sdk):
    body = {"model": "tiny:reasoning", "prompt": LONG, "max_tokens": 8, "logprobs": 2}
    whole = sdk.completions.create(**body).choices[0]
    chunks = [c for c in sdk.completions.create(**body, stream=True) if c.choices]
    pieces = [c.choices[0] for c in chunks if c.choices[0].logprobs is not None]
    assert "".join(p.text for p in pieces) == whole.text and len(pieces) >= 2  # really streamed, piece by piece
    tokens = [t for p in pieces for t in p.logprobs.tokens]
    assert tokens == whole.logprobs.tokens  # the end-of-sequence token included, as without streaming
    assert [v for p in pieces for v in p.logprobs.token_logprobs] == pytest.approx(whole.logprobs.token_logprobs, abs=1e-4)
    assert [o for p in pieces for o in p.logprobs.text_offset] == whole.logprobs.text_offset
    tops = [t for p in pieces for t in p.logprobs.top_logprobs]
    assert all(len(t) == 2 and set(t) == set(w) for t, w in zip(tops, whole.logprobs.top_logprobs))
    assert chunks[-1].choices[0].finish_reason == whole.finish_reason


def test_chat_stream_with_logprobs_and_a_stop_string(sdk):
    body = {"model": "tiny:reasoning", "messages": [{"role": "user", "content": LONG}], "max_tokens": 10,
            "logprobs": True, "top_logprobs": 1}
    whole = sdk.chat.completions.create(**body).choices[0]
    stream = list(sdk.chat.completions.create(**body, stream=True))
    content = [c.choices[0] for c in stream if c.choices and c.choices[0].delta.content]
    assert "".join(c.delta.content for c in content) == whole.message.content
    streamed = [t for c in stream if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert [t.token for t in streamed] == [t.token for t in whole.logprobs.content]
    assert [t.logprob for t in streamed] == pytest.approx([t.logprob for t in whole.logprobs.content], abs=1e-4)
    assert all(len(t.top_logprobs) == 1 for t in streamed)
    if len(whole.message.content) >= 2:  # a stop string cuts the text and the tokens after it
        stop = whole.message.content[1]
        cut = whole.message.content[:whole.message.content.index(stop)]
        stopped = list(sdk.chat.completions.create(**body, stream=True, stop=[stop]))
        shown = "".join(c.choices[0].delta.content or "" for c in stopped if c.choices)
        tokens = "".join(t.token for c in stopped if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content)
        assert shown == cut and tokens == cut

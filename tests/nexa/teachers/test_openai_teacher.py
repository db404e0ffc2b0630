"""The OpenAI-compatible client against the fake server: both APIs, logprobs, and how each failure is sorted."""

from __future__ import annotations

import pytest
from fake_teacher_server import MODEL, SECRET, FakeTeacherServer, teacher_answer

from nexa.teachers.errors import FatalTeacherError, PromptRejectedError, TransientTeacherError
from nexa.teachers.openai_api import OpenAITeacher, public_url
from nexa.teachers.protocol import GenerationParams, TeacherRequest

ASK = TeacherRequest.from_prompt("2+2?", GenerationParams(max_tokens=64, top_logprobs=2))


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_answer_usage_and_top_logprobs_from_both_apis(api):
    with FakeTeacherServer() as server:
        teacher = OpenAITeacher(server.url, MODEL, api_key=SECRET, api=api)
        response = teacher.complete([ASK])[0]
        body = server.bodies[0]
    assert response.text == teacher_answer("2+2?")
    assert (response.input_tokens, response.output_tokens) == (len("2+2?") + 3, len(response.text))
    assert response.finish_reason == "stop" and response.latency_ms > 0
    assert [lp.token for lp in response.logprobs] == list(response.text)
    assert [t.token for t in response.logprobs[0].top] == [response.text[0], "?"]
    assert body["max_tokens"] == 64 and body["temperature"] == 0.0
    assert ("messages" in body) == (api == "chat") and ("prompt" in body) == (api == "completions")


def test_system_message_goes_to_chat_and_is_refused_by_completions():
    request = TeacherRequest.from_prompt("hi", GenerationParams(), system="be brief")
    with FakeTeacherServer() as server:
        OpenAITeacher(server.url, MODEL, api_key=SECRET).complete([request])
        assert server.bodies[0]["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
        with pytest.raises(PromptRejectedError, match="one user message"):
            OpenAITeacher(server.url, MODEL, api_key=SECRET, api="completions").complete([request])


def test_failures_are_sorted_into_retry_skip_or_stop():
    with FakeTeacherServer(fail_rate=1.0, seed=0, retry_after="2", stall_s=0.6) as server:
        flaky = OpenAITeacher(server.url, MODEL, api_key=SECRET, timeout_s=0.3)
        seen = {}
        for i in range(12):
            with pytest.raises(TransientTeacherError) as caught:
                flaky.complete([TeacherRequest.from_prompt(f"p{i}", GenerationParams())])
            seen[caught.value.status] = caught.value
        assert seen[429].retry_after == 2.0 and seen[500].retry_after is None
        assert "did not answer within 0.3s" in str(seen[None])

        with pytest.raises(PromptRejectedError, match="context length exceeded"):
            flaky.complete([TeacherRequest.from_prompt("TOO-LONG", GenerationParams())])
        with pytest.raises(FatalTeacherError, match="refused the credentials"):
            OpenAITeacher(server.url, MODEL, api_key="wrong").complete([ASK])
        with pytest.raises(FatalTeacherError, match="404.*model 'nope'"):
            OpenAITeacher(server.url, "nope", api_key=SECRET).complete([ASK])
    with pytest.raises(TransientTeacherError, match="connection failed"):
        OpenAITeacher(server.url, MODEL).complete([ASK])  # the server is gone


def test_the_key_is_in_no_identity_repr_or_error():
    with FakeTeacherServer() as server:
        teacher = OpenAITeacher(server.url + "?api-version=1", MODEL, api_key=SECRET)
        with pytest.raises(PromptRejectedError) as caught:
            teacher.complete([TeacherRequest.from_prompt("ECHO-HEADERS", GenerationParams())])
    assert "Bearer ***" in str(caught.value)  # the server echoed the header; the client scrubbed it
    assert server.bodies == [] and "api-version" not in teacher.teacher_id  # routed right; identity has no query
    for text in (str(caught.value), repr(teacher), teacher.teacher_id):
        assert SECRET not in text
    assert public_url("https://u:p@api.example.com:8443/v1/?k=1") == "https://api.example.com:8443/v1"
    assert "u:p" not in OpenAITeacher("https://u:p@api.example.com/v1", "m").teacher_id

"""``nexa serve`` works as a teacher: nexa.teachers' OpenAI client completes prompts against it over real HTTP."""

from __future__ import annotations

import threading
import time

import pytest
import uvicorn

from nexa.serve.app import create_app
from nexa.teachers.errors import FatalTeacherError, PromptRejectedError
from nexa.teachers.openai_api import OpenAITeacher
from nexa.teachers.protocol import GenerationParams, TeacherRequest
from nexus import NexusModel

from serve_token import TOKEN

PROMPTS = ["max(3,14)=", "12 km in m?", "max(8,42)="]


@pytest.fixture(scope="module")
def server_url(bundle):
    """A real uvicorn server on a free 127.0.0.1 port, in a thread, stopped after the module."""
    config = uvicorn.Config(create_app(bundle, token=TOKEN), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_openai_teacher_completes_prompts(server_url, bundle, api):
    teacher = OpenAITeacher(server_url, "tiny:reasoning", api_key=TOKEN, api=api)
    params = GenerationParams(max_tokens=8, stop=("\n",), seed=7)
    try:
        responses = teacher.complete([TeacherRequest.from_prompt(p, params) for p in PROMPTS])
    finally:
        teacher.close()
    model = NexusModel.load(bundle)
    expected = model.complete_batch(PROMPTS, "reasoning", max_new_tokens=8, stop=["\n"])
    assert [r.text for r in responses] == [g.text for g in expected]
    assert [r.input_tokens for r in responses] == [g.prompt_tokens for g in expected]
    assert [r.output_tokens for r in responses] == [g.completion_tokens for g in expected]
    assert all(r.finish_reason in ("stop", "length") and r.latency_ms > 0 for r in responses)


def test_openai_teacher_errors_are_classified(server_url):
    wrong_key = OpenAITeacher(server_url, "tiny", api_key="not-the-token")
    no_such_model = OpenAITeacher(server_url, "tiny:poetry", api_key=TOKEN)
    too_long = OpenAITeacher(server_url, "tiny", api_key=TOKEN)
    try:
        with pytest.raises(FatalTeacherError, match="credentials"):
            wrong_key.complete([TeacherRequest.from_prompt("max(1,2)=", GenerationParams(max_tokens=4))])
        with pytest.raises(FatalTeacherError, match="404"):
            no_such_model.complete([TeacherRequest.from_prompt("max(1,2)=", GenerationParams(max_tokens=4))])
        with pytest.raises(PromptRejectedError, match="context"):  # the default max_tokens 256 does not fit the 64-token context
            too_long.complete([TeacherRequest.from_prompt("max(1,2)=", GenerationParams())])
    finally:
        for teacher in (wrong_key, no_such_model, too_long):
            teacher.close()

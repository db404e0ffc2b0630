"""A teacher behind an OpenAI-compatible HTTP API (OpenAI, vLLM, Ollama, llama.cpp, ``nexa serve``).

One request per call, through ``/chat/completions`` or ``/completions``. HTTP outcomes are
sorted into the errors of :mod:`nexa.teachers.errors` so the caller knows whether to retry, skip
the prompt or stop. The API key lives only in the client's headers: it is never part of the
teacher's identity, its repr or any error message (bodies are scrubbed of it too).
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal, Sequence
from urllib.parse import urlsplit, urlunsplit

import httpx

from nexa.teachers.errors import FatalTeacherError, PromptRejectedError, TransientTeacherError
from nexa.teachers.faults import parse_retry_after
from nexa.teachers.protocol import TeacherRequest, TeacherResponse, TokenLogprob, TopLogprob

ApiKind = Literal["chat", "completions"]
RETRYABLE_STATUS = {408, 409, 425, 429}  # plus every 5xx
_BODY_SNIPPET = 300


class OpenAITeacher:
    """Chat or completion calls against ``base_url`` (e.g. ``http://127.0.0.1:8000/v1``) for ``model``."""

    max_batch = 1
    bills_tokens = True

    def __init__(self, base_url: str, model: str, api_key: str | None = None, api: ApiKind = "chat",
                 timeout_s: float = 60.0):
        if api not in ("chat", "completions"):
            raise ValueError(f"api must be 'chat' or 'completions', got {api!r}")
        self.base_url = base_url.rstrip("/")
        self._model = model
        self.api = api
        self.timeout_s = timeout_s
        self._secret = api_key or None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s), headers=headers)

    def __repr__(self) -> str:
        return f"OpenAITeacher({self.teacher_id!r})"

    @property
    def teacher_id(self) -> str:
        return f"openai-compatible:{self.api}:{public_url(self.base_url)}#{self._model}"

    @property
    def model_name(self) -> str:
        return self._model

    def close(self) -> None:
        self._client.close()

    def complete(self, requests: Sequence[TeacherRequest]) -> list[TeacherResponse]:
        return [self._call(request) for request in requests]

    # -- one call -------------------------------------------------------------------------------
    def _call(self, request: TeacherRequest) -> TeacherResponse:
        url = _join(self.base_url, "chat/completions" if self.api == "chat" else "completions")
        began = time.perf_counter()
        try:
            reply = self._client.post(url, json=self._body(request))
        except httpx.TimeoutException as exc:
            raise TransientTeacherError(
                f"{public_url(url)} did not answer within {self.timeout_s}s ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise TransientTeacherError(
                f"{public_url(url)}: connection failed ({type(exc).__name__}: {self.scrub(str(exc))})") from None
        latency_ms = (time.perf_counter() - began) * 1000
        self._check_status(reply, url)
        try:
            data = reply.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise TransientTeacherError(
                f"{public_url(url)} answered 200 with a body that is not JSON: {self._snippet(reply)}") from None
        return self._parse(data, latency_ms, url)

    def _body(self, request: TeacherRequest) -> dict[str, Any]:
        params = request.params
        body: dict[str, Any] = {"model": self._model, "max_tokens": params.max_tokens,
                                "temperature": params.temperature, "top_p": params.top_p}
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if self.api == "chat":
            body["messages"] = request.chat_messages()
            if params.top_logprobs:
                body.update(logprobs=True, top_logprobs=params.top_logprobs)
        else:
            body["prompt"] = request.prompt_text()
            if params.top_logprobs:
                body["logprobs"] = params.top_logprobs
        return body

    def _check_status(self, reply: httpx.Response, url: str) -> None:
        status = reply.status_code
        if status == 200:
            return
        where = public_url(url)
        if status in RETRYABLE_STATUS or 500 <= status < 600:
            raise TransientTeacherError(f"{where} answered {status}: {self._snippet(reply)}", status=status,
                                        retry_after=parse_retry_after(reply.headers))
        if status in (401, 403):
            raise FatalTeacherError(f"{where} refused the credentials ({status}): check the API key named by --api-key-env")
        if status == 404:
            raise FatalTeacherError(f"{where} answered 404: check that --teacher ends with the API root (e.g. /v1) "
                                    f"and that model {self._model!r} is served there ({self._snippet(reply)})")
        raise PromptRejectedError(f"{where} rejected the request with {status}: {self._snippet(reply)}")

    def _parse(self, data: Any, latency_ms: float, url: str) -> TeacherResponse:
        try:
            choice = data["choices"][0]
            usage = data["usage"]
            input_tokens, output_tokens = int(usage["prompt_tokens"]), int(usage.get("completion_tokens") or 0)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise PromptRejectedError(
                f"{public_url(url)} answered 200 without choices[0] and usage.prompt_tokens "
                f"(missing {exc!s}); cost cannot be accounted: {self.scrub(json.dumps(data)[:_BODY_SNIPPET])}"
            ) from None
        if self.api == "chat":
            text = (choice.get("message") or {}).get("content") or ""
            logprobs = _chat_logprobs(choice.get("logprobs"))
        else:
            text = choice.get("text") or ""
            logprobs = _completion_logprobs(choice.get("logprobs"))
        return TeacherResponse(text=text, input_tokens=input_tokens, output_tokens=output_tokens,
                               latency_ms=round(latency_ms, 3), finish_reason=choice.get("finish_reason"),
                               logprobs=logprobs)

    # -- secrets --------------------------------------------------------------------------------
    def scrub(self, text: str) -> str:
        """``text`` with the API key replaced, for servers that echo headers back in error bodies."""
        return text.replace(self._secret, "***") if self._secret else text

    def _snippet(self, reply: httpx.Response) -> str:
        return self.scrub(reply.text[:_BODY_SNIPPET].strip()) or "<empty body>"


def public_url(url: str) -> str:
    """``url`` without user:password or query string, so it can be logged and used as an identity."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _join(base_url: str, path: str) -> str:
    """``base_url`` + ``/path``, keeping any query string (some gateways put an API version there)."""
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc, f"{parts.path.rstrip('/')}/{path}", parts.query, ""))


def _chat_logprobs(block: Any) -> list[TokenLogprob] | None:
    """Chat format: ``{"content": [{"token", "logprob", "top_logprobs": [{"token", "logprob"}]}]}``."""
    if not block or not block.get("content"):
        return None
    return [
        TokenLogprob(token=item["token"], logprob=float(item["logprob"]),
                     top=[TopLogprob(token=t["token"], logprob=float(t["logprob"])) for t in item.get("top_logprobs") or []])
        for item in block["content"]
    ]


def _completion_logprobs(block: Any) -> list[TokenLogprob] | None:
    """Legacy completions format: parallel ``tokens``, ``token_logprobs`` and ``top_logprobs`` (dicts) lists."""
    if not block or not block.get("tokens"):
        return None
    tops = block.get("top_logprobs") or [None] * len(block["tokens"])
    return [
        TokenLogprob(token=token, logprob=None if logprob is None else float(logprob),
                     top=[TopLogprob(token=t, logprob=float(lp)) for t, lp in (top or {}).items()])
        for token, logprob, top in zip(block["tokens"], block["token_logprobs"], tops)
    ]

"""The FastAPI app: OpenAI-compatible completions and chat over one bundle, with auth, limits, health and metrics.

Build it with :func:`create_app` (tests use it with fastapi's TestClient; ``nexa serve`` hands it to uvicorn).
Bodies are read and parsed here rather than by FastAPI so every bad input gets the status OpenAI gives:
413 too large (the body is read and dropped, never parsed, so the client hears the 413 instead of a reset
connection), 400 not JSON or wrong types or values, 404 unknown model or capability, 403 safety, 401 auth.
Errors have OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from nexa.serve.batching import Batcher
from nexa.serve.engine import Engine, Job, RequestError
from nexa.serve.limits import DEFAULT_MAX_BATCH, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_TOKENS_CAP
from nexa.serve.metrics import ServeMetrics
from nexa.serve.logprobs import chat_logprobs, completion_logprobs
from nexa.serve.schemas import ChatRequest, CompletionRequest, DetokenizeRequest, TokenizeRequest
from nexus import BundleError, SafetyError
from nexus.model import Generation

log = logging.getLogger("nexa.serve")
DRAIN_LIMIT_BYTES = 64 << 20  # an oversized body up to this size is read and dropped so its 413 is heard
_STATUS_KINDS = {400: "invalid_json", 401: "authentication_error", 403: "safety_error", 404: "not_found",
                 405: "method_not_allowed", 413: "request_too_large", 422: "invalid_request_error"}


def create_app(bundle_path: str | Path, token: str | None = None, max_tokens_cap: int = DEFAULT_MAX_TOKENS_CAP,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_batch: int = DEFAULT_MAX_BATCH,
               device: str = "cpu", fallback_url: str | None = None) -> FastAPI:
    """Load the bundle (hash-checked by nexus) and return the app serving it; ``token`` turns on bearer auth;
    ``max_batch`` prompts at most are answered together (1 = no dynamic batching); ``fallback_url`` is where the
    bundle's uncertainty gate escalates abstained prompts (overriding the manifest's)."""
    if min(max_tokens_cap, max_body_bytes, max_batch) < 1:
        raise ValueError(f"max_tokens_cap, max_body_bytes and max_batch must be positive, got {max_tokens_cap}, "
                         f"{max_body_bytes}, {max_batch}")
    engine = Engine.load(Path(bundle_path), max_tokens_cap, device=device, fallback_url=fallback_url)
    metrics = ServeMetrics()
    batcher = Batcher(engine, max_batch, on_batch=metrics.batch_size.observe)
    app = FastAPI(title=f"nexa serve: {engine.name}", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine, app.state.metrics = engine, metrics
    app.state.token, app.state.max_body_bytes = token or None, max_body_bytes
    app.state.batcher = batcher
    _add_error_handlers(app)
    _add_routes(app, engine, metrics, batcher)
    app.add_middleware(_MetricsMiddleware, metrics=metrics)
    return app


# ------------------------------------------------------------------------------------ auth, body, errors
async def require_token(request: Request) -> None:
    """Bearer auth when a token is configured; constant-time compare; 401 with WWW-Authenticate otherwise."""
    expected = request.app.state.token
    if expected is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise RequestError(401, "missing or wrong bearer token: send 'Authorization: Bearer <token>' "
                           "(the token given to nexa serve --token or NEXA_SERVE_TOKEN)", None, "authentication_error")


async def read_body(request: Request, model: type[BaseModel]) -> Any:
    """The request body parsed into ``model``: 413 beyond the size limit (checked before any parsing), 400 if
    not JSON or if it does not fit. Fields the model does not define are ignored and logged."""
    limit = request.app.state.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        if int(declared) <= DRAIN_LIMIT_BYTES:
            await _read_limited(request, 0)
        raise RequestError(413, f"body is {declared} bytes; this server takes at most {limit} (nexa serve --max-body-bytes)",
                           None, "request_too_large")
    raw = await _read_limited(request, limit)
    if raw is None:
        raise RequestError(413, f"body exceeds {limit} bytes (nexa serve --max-body-bytes)", None, "request_too_large")
    try:
        data = json.loads(bytes(raw))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"body is not valid JSON: {exc}", None, "invalid_json") from None
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        raise RequestError(400, _describe(exc), _first_field(exc)) from None
    ignored = sorted(parsed.model_extra or {})
    if ignored:
        log.info("%s: ignoring fields this server does not define: %s", request.url.path, ignored)
    return parsed


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None past ``limit`` bytes. An oversized body is still read to its end (and dropped, up to
    ``DRAIN_LIMIT_BYTES``) so a client that is still sending hears the 413 instead of a reset connection."""
    raw, seen = bytearray(), 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen <= limit:
            raw.extend(chunk)
        elif seen > DRAIN_LIMIT_BYTES:
            break
    return bytes(raw) if seen <= limit else None


def _describe(exc: ValidationError) -> str:
    problems = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()]
    return "invalid request: " + "; ".join(problems)


def _first_field(exc: ValidationError) -> str | None:
    errors = exc.errors()
    return ".".join(str(p) for p in errors[0]["loc"]) or None if errors else None


def _error_response(status: int, message: str, kind: str, param: str | None = None) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="nexa-serve"'} if status == 401 else None
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": status}},
                        status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
        request.state.error_kind = exc.kind
        return _error_response(exc.status, exc.message, exc.kind, exc.param)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = _STATUS_KINDS.get(exc.status_code, "http_error")
        request.state.error_kind = kind
        return _error_response(exc.status_code, f"{exc.detail} ({request.method} {request.url.path})", kind)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        request.state.error_kind = "invalid_request_error"
        return _error_response(400, f"invalid request: {exc.errors()}", "invalid_request_error")


# ------------------------------------------------------------------------------------------ routes
def _add_routes(app: FastAPI, engine: Engine, metrics: ServeMetrics, batcher: Batcher) -> None:
    auth = [Depends(require_token)]

    @app.get("/healthz")
    async def healthz() -> dict:
        """Liveness, open even when a token is configured."""
        return {"status": "ok", "bundle": engine.name}

    @app.get("/v1/models", dependencies=auth)
    async def models() -> dict:
        created = int(metrics.started)
        return {"object": "list", "data": [{"id": m, "object": "model", "created": created, "owned_by": "nexa"}
                                           for m in engine.model_ids()]}

    @app.get("/v1/models/{model_id}", dependencies=auth)
    async def model(model_id: str) -> dict:
        engine.resolve_capability(model_id, None)  # 404 in OpenAI's shape when not served here
        return {"id": model_id, "object": "model", "created": int(metrics.started), "owned_by": "nexa"}

    @app.get("/tokenizer_info", dependencies=auth)
    async def tokenizer_info() -> dict:
        """vLLM's tokenizer endpoints: lm-evaluation-harness then tokenizes with the bundle's own tokenizer."""
        return engine.tokenizer_info()

    @app.post("/tokenize", dependencies=auth)
    async def tokenize(request: Request) -> dict:
        body: TokenizeRequest = await read_body(request, TokenizeRequest)
        tokens = engine.model.tokenizer.encode(body.prompt, add_special_tokens=body.add_special_tokens).ids
        return {"tokens": tokens, "count": len(tokens), "max_model_len": engine.model.spec.max_position_embeddings}

    @app.post("/detokenize", dependencies=auth)
    async def detokenize(request: Request) -> dict:
        body: DetokenizeRequest = await read_body(request, DetokenizeRequest)
        return {"prompt": engine.model.tokenizer.decode(body.tokens, skip_special_tokens=False)}

    @app.get("/api/status", dependencies=auth)
    async def status() -> dict:
        manifest = engine.model.manifest
        return {"bundle": engine.name, "version": manifest.get("version"), "capabilities": engine.model.capabilities,
                "retention": manifest.get("retention") or {}, "uptime_s": round(time.time() - metrics.started, 3),
                "requests_served": metrics.served, "requests_total": metrics.total,
                "max_tokens_cap": engine.max_tokens_cap, "max_batch": batcher.max_prompts,
                "context_tokens": engine.model.spec.max_position_embeddings,
                "parameters": engine.model.parameter_count()}

    @app.get("/metrics", dependencies=auth)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/completions", dependencies=auth)
    async def completions(request: Request) -> Response:
        body: CompletionRequest = await read_body(request, CompletionRequest)
        return await _answer(engine, metrics, batcher, body, body.prompts(), chat=False)

    @app.post("/v1/chat/completions", dependencies=auth)
    async def chat_completions(request: Request) -> Response:
        body: ChatRequest = await read_body(request, ChatRequest)
        return await _answer(engine, metrics, batcher, body, [_chat_prompt(engine, body)], chat=True)


def _chat_prompt(engine: Engine, body: ChatRequest) -> str:
    """The whole conversation through the bundle's chat template."""
    try:
        return engine.model.chat_prompt([{"role": m.role, "content": m.content} for m in body.messages])
    except ValueError as exc:
        raise RequestError(400, str(exc), "messages") from exc


def _make_job(engine: Engine, body: CompletionRequest | ChatRequest, prompts: list) -> tuple[Job, list[int]]:
    """The checked job (each prompt repeated ``n`` times, as OpenAI orders choices) and each prompt's token count."""
    capability = engine.resolve_capability(body.model, body.capability)
    max_tokens = engine.check_max_tokens(body.token_limit())
    counts = engine.check_context(prompts, max_tokens)
    job = Job([p for p in prompts for _ in range(body.n)], capability, max_tokens, body.temperature, body.top_p,
              body.seed, body.stop_list(), body.enable_uncensored)
    return job, counts


def _runtime_error(exc: Exception) -> RequestError:
    """The 4xx for an error nexus raised about a request (never a 500 for bad input)."""
    if isinstance(exc, SafetyError):
        return RequestError(403, str(exc), "capability", "safety_error")
    if isinstance(exc, BundleError):
        return RequestError(404, str(exc), "capability", "model_not_found")
    return RequestError(400, str(exc), None)


async def _answer(engine: Engine, metrics: ServeMetrics, batcher: Batcher, body, prompts: list[str],
                  chat: bool) -> Response:
    job, counts = _make_job(engine, body, prompts)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        logprobs = body.top_count() if body.wants_logprobs() else None
        return await _stream(engine, metrics, job, counts[0], chat, include_usage, logprobs)
    try:
        if job.max_tokens == 0:
            generations = await run_in_threadpool(engine.prompt_only, job, [c for c in counts for _ in range(body.n)])
        else:
            generations = await batcher.complete(job)
        logprobs = await _logprobs(engine, job, generations, body, chat)
    except (SafetyError, BundleError, ValueError) as exc:
        raise _runtime_error(exc) from None
    for g in generations:
        metrics.tokens(g.capability, g.prompt_tokens, g.completion_tokens)
    metrics.answered()
    prompt_tokens = sum(counts)
    completion_tokens = sum(g.completion_tokens for g in generations)
    echo = [_echo_text(engine, p) if getattr(body, "echo", False) else "" for p in job.prompts]
    choices = [_choice(i, e + g.text, g.finish_reason, g.capability, chat, lp)
               for i, (e, g, lp) in enumerate(zip(echo, generations, logprobs))]
    for choice, g in zip(choices, generations):  # the bundle's uncertainty gate (nexus.gate), when it has one
        choice.update({"confidence": g.confidence, "abstained": g.abstained, "escalated": g.escalated} if g.confidence is not None else {})
    return JSONResponse({
        "id": _new_id(chat), "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
        "model": _model_id(engine, generations[0].capability), "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens}})


def _choice(index: int, text: str, finish_reason: str, capability: str | None, chat: bool,
            logprobs: dict | None = None) -> dict:
    content = {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
    return {"index": index, **content, "logprobs": logprobs, "finish_reason": finish_reason, "capability": capability}


def _echo_text(engine: Engine, prompt) -> str:
    return prompt if isinstance(prompt, str) else engine.model.tokenizer.decode(prompt, skip_special_tokens=True)


async def _logprobs(engine: Engine, job: Job, generations: list[Generation], body, chat: bool) -> list[dict | None]:
    """Each choice's OpenAI ``logprobs`` object (None when not asked for): the whole sequence is scored once,
    prompt included, so ``echo`` also gives the prompt tokens' log-probabilities."""
    echo = bool(getattr(body, "echo", False))
    if not body.wants_logprobs():
        return [None] * len(generations)
    prompt_ids = engine.prompt_ids(job.prompts)
    completion_ids = [engine.completion_ids(g) for g in generations]
    scores = await run_in_threadpool(engine.score, [p + c for p, c in zip(prompt_ids, completion_ids)], job,
                                     body.top_count())
    if chat:
        return [chat_logprobs(engine.token_text, c[:len(c) - g.eos], s[len(p) - 1:], body.top_count())
                for p, c, s, g in zip(prompt_ids, completion_ids, scores, generations)]
    return [completion_logprobs(engine.token_text, p, c, s, body.top_count(), echo, len(_echo_text(engine, prompt)))
            for prompt, p, c, s in zip(job.prompts, prompt_ids, completion_ids, scores)]


def _model_id(engine: Engine, capability: str | None) -> str:
    return f"{engine.name}:{capability}" if capability else engine.name


def _new_id(chat: bool) -> str:
    return f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"


# ---------------------------------------------------------------------------------------- streaming
async def _stream(engine: Engine, metrics: ServeMetrics, job: Job, prompt_tokens: int, chat: bool,
                  include_usage: bool, logprobs: int | None = None) -> Response:
    """Start generating in a worker thread; errors before the first event become a 4xx, then SSE chunks follow."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    cancelled = threading.Event()

    def put(kind: str, value: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

    def work() -> None:
        try:
            put("end", engine.stream(job, lambda piece, scores: put("piece", (piece, scores)), cancelled, logprobs))
        except (SafetyError, BundleError, ValueError) as exc:
            put("error", exc)
        except Exception as exc:  # a server fault: reported to the client below and logged, not swallowed
            log.exception("streaming generation failed")
            put("fault", exc)

    capability = await run_in_threadpool(engine.route, job)
    loop.run_in_executor(None, work)
    first = await queue.get()
    if first[0] == "error":
        raise _runtime_error(first[1])
    if first[0] == "fault":
        raise first[1]
    shape = _ChunkShape(engine, capability, chat, logprobs, len(_echo_text(engine, job.prompts[0])))
    chunks = _sse(engine, metrics, queue, first, cancelled, shape, prompt_tokens, include_usage)
    return StreamingResponse(chunks, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


class _ChunkShape:
    """How one streamed chunk looks for the completions or the chat API."""

    def __init__(self, engine: Engine, capability: str | None, chat: bool, top: int | None = None, offset: int = 0):
        """``top``: None without ``logprobs``, else the alternatives per token; ``offset``: where the completion's
        text starts (the prompt's length), for the completions API's ``text_offset``."""
        self.id, self.chat, self.capability = _new_id(chat), chat, capability
        self.model, self.created = _model_id(engine, capability), int(time.time())
        self.engine, self.top, self.offset = engine, top, offset

    def logprobs(self, scores: list) -> dict | None:
        """OpenAI's ``logprobs`` for the tokens one chunk releases (chat lists only tokens that spell content)."""
        if self.top is None:
            return None
        if self.chat:
            spelled = [s for s in scores if s.token_id != self.engine.model.spec.eos_token_id]
            return chat_logprobs(self.engine.token_text, [s.token_id for s in spelled], spelled, self.top)
        shown = completion_logprobs(self.engine.token_text, [0], [s.token_id for s in scores], scores, self.top,
                                    False, self.offset)
        self.offset += sum(len(token) for token in shown["tokens"])
        return shown

    def chunk(self, text: str | None, finish_reason: str | None, usage: dict | None = None, scores: list = ()) -> str:
        if self.chat:
            delta = {} if text is None else {"content": text}
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
            if self.top is not None:
                choice["logprobs"] = self.logprobs(list(scores)) if text is not None else None
        else:
            choice = {"index": 0, "text": text or "", "logprobs": self.logprobs(list(scores)) if text is not None else None,
                      "finish_reason": finish_reason}
        body = {"id": self.id, "object": "chat.completion.chunk" if self.chat else "text_completion",
                "created": self.created, "model": self.model, "choices": [] if usage else [choice]}
        if usage:
            body["usage"] = usage
        return f"data: {json.dumps(body)}\n\n"


async def _sse(engine: Engine, metrics: ServeMetrics, queue: asyncio.Queue, first: tuple[str, Any],
               cancelled: threading.Event, shape: _ChunkShape, prompt_tokens: int,
               include_usage: bool) -> AsyncIterator[str]:
    event = first
    try:
        if shape.chat:
            yield f"data: {json.dumps(_role_chunk(shape))}\n\n"
        while event[0] == "piece":
            yield shape.chunk(event[1][0], None, scores=event[1][1])
            event = await queue.get()
        if event[0] != "end":
            yield f"data: {json.dumps({'error': {'message': str(event[1]), 'type': 'server_error', 'code': 500}})}\n\n"
            return
        text, finish_reason = event[1]
        completion_tokens = engine.count_tokens(text)
        metrics.tokens(shape.capability, prompt_tokens, completion_tokens)
        metrics.answered()
        yield shape.chunk(None, finish_reason)
        if include_usage:
            yield shape.chunk(None, None, {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                           "total_tokens": prompt_tokens + completion_tokens})
        yield "data: [DONE]\n\n"
    finally:
        cancelled.set()


def _role_chunk(shape: _ChunkShape) -> dict:
    return {"id": shape.id, "object": "chat.completion.chunk", "created": shape.created, "model": shape.model,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}


# ------------------------------------------------------------------------------------------ metrics
class _MetricsMiddleware:
    """Counts every request by route template and status and times it to the last byte sent (streams included)."""

    def __init__(self, app: Callable, metrics: ServeMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began, status = time.perf_counter(), [500]

        async def timed_send(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self._record(scope, status[0], began)

        try:
            await self.app(scope, receive, timed_send)
        except Exception:
            self._record(scope, 500, began)
            raise

    def _record(self, scope, status: int, began: float) -> None:
        route = getattr(scope.get("route"), "path", "unmatched")
        self.metrics.observe(route, status, time.perf_counter() - began)
        if status >= 400:
            kind = (scope.get("state") or {}).get("error_kind") or _STATUS_KINDS.get(status, "server_error")
            self.metrics.error(route, kind)

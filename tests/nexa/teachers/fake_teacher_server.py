"""A fake OpenAI-compatible teacher on 127.0.0.1 that fails on purpose, and a prompt dataset to ask it.

The server decides each call's fate from (seed, prompt, attempt number of that prompt), so a run
sees the same faults whatever the thread timing: a 500, a 429 with ``Retry-After``, or a stall that
outlasts the client's timeout. Only answered calls are billed; the counters let tests check that
no prompt was ever paid for twice.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from nexa.ledger import Lab
from nexa.ledger.datasets import write_dataset_version

SECRET = "sk-test-SECRET-7f3a9c1e5b"
MODEL = "fake-teacher"
PRICE = {"input_per_mtok": 3.0, "output_per_mtok": 7.0}


def teacher_answer(prompt: str) -> str:
    """What the fake teacher says: deterministic, so tests can check every answer."""
    return f"answer to {prompt[::-1]}"


class FakeTeacherServer:
    """Threaded HTTP server speaking the chat and completions APIs, with seeded faults and billing counters."""

    def __init__(self, fail_rate: float = 0.0, seed: int = 0, stall_s: float = 1.0, retry_after: str = "1",
                 key: str | None = SECRET, latency_s: float = 0.0):
        self.fail_rate, self.seed, self.stall_s, self.retry_after = fail_rate, seed, stall_s, retry_after
        self.key, self.latency_s = key, latency_s
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.billed: Counter[str] = Counter()
        self.events: dict[str, list[tuple[float, int]]] = defaultdict(list)  # prompt -> (arrival time, status)
        self.prompt_tokens = self.completion_tokens = 0
        self.hold_after_billed: int | None = None
        self.released = threading.Event()
        self.bodies: list[dict] = []
        self.unauthorized = 0
        handler = type("Handler", (_Handler,), {"fake": self})
        self.httpd = _Server(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    @property
    def total_billed(self) -> int:
        with self.lock:
            return sum(self.billed.values())

    def snapshot(self) -> tuple[Counter, Counter]:
        with self.lock:
            return Counter(self.requests), Counter(self.billed)

    def fate(self, prompt: str, attempt: int) -> str:
        rng = random.Random(f"{self.seed}:{prompt}:{attempt}")
        if rng.random() >= self.fail_rate:
            return "ok"
        return rng.choice(["500", "429", "stall"])

    def respond(self, body: dict, path: str) -> tuple[int, dict, dict]:
        """(status, headers, json body) for one call, billing it when it is answered."""
        prompt = body["messages"][-1]["content"] if "messages" in body else body["prompt"]
        arrived = time.monotonic()
        with self.lock:
            self.requests[prompt] += 1
            attempt = self.requests[prompt]
            self.bodies.append(body)
        fate = self.fate(prompt, attempt)
        if fate == "500":
            return self._log(prompt, arrived, 500, {}, {"error": {"message": "internal error"}})
        if fate == "429":
            return self._log(prompt, arrived, 429, {"Retry-After": self.retry_after}, {"error": {"message": "slow down"}})
        if fate == "stall":
            time.sleep(self.stall_s)
            return self._log(prompt, arrived, 504, {}, {"error": {"message": "stalled"}})
        if self.latency_s:
            time.sleep(self.latency_s)
        return self._answer(prompt, arrived, body, path)

    def _answer(self, prompt: str, arrived: float, body: dict, path: str) -> tuple[int, dict, dict]:
        text = teacher_answer(prompt)[: body.get("max_tokens") or None]  # one token per character
        usage = {"prompt_tokens": len(prompt) + 3, "completion_tokens": len(text)}
        with self.lock:  # past the hold point, calls wait (unbilled) until the test releases them
            gated = self.hold_after_billed is not None and sum(self.billed.values()) >= self.hold_after_billed
            if not gated:
                self.billed[prompt] += 1
                self.prompt_tokens += usage["prompt_tokens"]
                self.completion_tokens += usage["completion_tokens"]
        if gated:
            self.released.wait(30)
            return self._log(prompt, arrived, 503, {}, {"error": {"message": "held"}})
        if path.endswith("/chat/completions"):
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            if body.get("logprobs"):
                choice["logprobs"] = {"content": [
                    {"token": ch, "logprob": -0.25, "top_logprobs": [{"token": ch, "logprob": -0.25}, {"token": "?", "logprob": -2.0}]}
                    for ch in text]}
        else:
            choice = {"index": 0, "text": text, "finish_reason": "stop"}
            if body.get("logprobs"):
                choice["logprobs"] = {"tokens": list(text), "token_logprobs": [-0.5] * len(text),
                                      "top_logprobs": [{ch: -0.5, "?": -3.0} for ch in text]}
        self._log(prompt, arrived, 200, {}, {})
        return 200, {}, {"id": "x", "object": "chat.completion", "model": body.get("model"), "choices": [choice], "usage": usage}

    def _log(self, prompt: str, arrived: float, status: int, headers: dict, body: dict) -> tuple[int, dict, dict]:
        with self.lock:
            self.events[prompt].append((arrived, status))
        return status, headers, body

    def __enter__(self) -> "FakeTeacherServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # many clients connect at once; the default backlog of 5 would refuse some


class _Handler(BaseHTTPRequestHandler):
    fake: FakeTeacherServer

    def log_message(self, format, *args) -> None:  # keep test output quiet
        return None

    def do_POST(self) -> None:
        fake = self.fake
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if fake.key is not None and self.headers.get("Authorization") != f"Bearer {fake.key}":
            with fake.lock:
                fake.unauthorized += 1
            return self._send(401, {}, {"error": {"message": "invalid api key"}})
        route = self.path.split("?")[0]
        if not route.endswith(("/chat/completions", "/completions")):
            return self._send(404, {}, {"error": {"message": f"no route {route}"}})
        if body.get("model") != MODEL:
            return self._send(404, {}, {"error": {"message": f"model {body.get('model')} not found"}})
        prompt = body["messages"][-1]["content"] if "messages" in body else body.get("prompt", "")
        if prompt == "ECHO-HEADERS":  # a badly behaved server that echoes the caller's headers in an error
            return self._send(400, {}, {"error": {"message": f"bad request, headers were {dict(self.headers)}"}})
        if prompt == "TOO-LONG":
            return self._send(400, {}, {"error": {"message": "context length exceeded"}})
        self._send(*fake.respond(body, route))

    def _send(self, status: int, headers: dict, body: dict) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out (a stall) or was killed; nothing to answer


def make_prompts(lab: Lab, n: int, dataset_id: str = "prompts") -> str:
    """A dataset version of ``n`` distinct prompts (with reference answers); returns its ID@vN."""
    rows = [{"prompt": f"q{i:04d}: what is {i} + {i}?", "answer": str(2 * i), "capability": "reasoning"} for i in range(n)]
    return write_dataset_version(lab, dataset_id, rows, row_schema="qa").ref

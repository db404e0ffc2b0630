"""A local OpenAI-compatible chat endpoint on 127.0.0.1 (http.server in a thread) that records every request.

Tests give it the reply as a function of the last user message (and how many calls came before), so a
judge, a teacher that sometimes answers unsafely, or an augmenting teacher are each a few lines.
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator


class LocalOpenAI:
    """``with LocalOpenAI(reply) as server:`` serves ``server.url`` (ends in ``/v1``) until the block ends."""

    def __init__(self, reply: Callable[[str, int], str]):
        self.requests: list[dict] = []
        self.reply = reply
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                content = server.reply(body["messages"][-1]["content"], len(server.requests))
                reply = json.dumps({"model": body["model"], "choices": [{"message": {"role": "assistant", "content": content},
                                    "finish_reason": "stop"}], "usage": {"prompt_tokens": 50, "completion_tokens": 10}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                return None

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> "LocalOpenAI":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@contextmanager
def echoing_completions() -> Iterator[str]:
    """A ``/v1/completions`` endpoint answering ``fallback:<prompt>``: where an abstaining student escalates."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            asked = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            body = json.dumps({"choices": [{"text": f"fallback:{asked['prompt']}"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1/completions"
    finally:
        httpd.shutdown()
        httpd.server_close()

"""A local OpenAI-compatible judge on 127.0.0.1 (http.server in a thread) that records what it is asked.

Its pairwise behaviour is a pure position bias — it always prefers whichever answer is shown first —
unless one answer contains the word ``PREFERRED``, which it picks wherever it is shown.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class JudgeServer:
    def __init__(self, score: int = 4):
        self.requests: list[dict] = []
        self.score = score
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                reply = json.dumps({"model": body["model"], "choices": [{"message": {"role": "assistant",
                                    "content": server.answer(body["messages"][-1]["content"])}}],
                                    "usage": {"prompt_tokens": 50, "completion_tokens": 10}}).encode()
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

    def answer(self, content: str) -> str:
        if "ANSWER A:" in content:
            shown_a = re.search(r"ANSWER A: (.*)", content).group(1)
            shown_b = re.search(r"ANSWER B: (.*)", content).group(1)
            winner = "B" if "PREFERRED" in shown_b and "PREFERRED" not in shown_a else "A"
            return json.dumps({"winner": winner, "reason": "position"})
        return f'Here is my verdict: {{"score": {self.score}, "reason": "ok"}}'

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

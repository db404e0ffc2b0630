"""A local OpenAI-compatible judge that records what it is asked.

Its pairwise behaviour is a pure position bias — it always prefers whichever answer is shown first —
unless one answer contains the word ``PREFERRED``, which it picks wherever it is shown.
"""

from __future__ import annotations

import json
import re

from local_openai import LocalOpenAI


class JudgeServer(LocalOpenAI):
    def __init__(self, score: int = 4):
        self.score = score
        super().__init__(lambda content, _calls: self.answer(content))

    def answer(self, content: str) -> str:
        if "ANSWER A:" in content:
            shown_a = re.search(r"ANSWER A: (.*)", content).group(1)
            shown_b = re.search(r"ANSWER B: (.*)", content).group(1)
            winner = "B" if "PREFERRED" in shown_b and "PREFERRED" not in shown_a else "A"
            return json.dumps({"winner": winner, "reason": "position"})
        return f'Here is my verdict: {{"score": {self.score}, "reason": "ok"}}'

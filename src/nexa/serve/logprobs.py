"""OpenAI's two ``logprobs`` shapes, built from the per-token scores the runtime returns.

``/v1/completions`` (the legacy shape lm-evaluation-harness reads): parallel lists ``tokens``,
``token_logprobs``, ``top_logprobs`` (one ``{token: logprob}`` dict per position) and ``text_offset``; with
``echo`` the prompt's tokens come first and the very first token, having no context, gets ``None``.
``/v1/chat/completions``: ``{"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}], "refusal"}``.
"""

from __future__ import annotations

from typing import Callable

from nexus.model import TokenScore

TokenText = Callable[[int], str]


def completion_logprobs(token_text: TokenText, prompt_ids: list[int], completion_ids: list[int],
                        scores: list[TokenScore], top: int, echo: bool, prompt_chars: int) -> dict:
    """``scores`` cover positions 1.. of prompt + completion; the completion's end-of-sequence token, when
    the model emitted it, is listed too (scoring code counts on one entry per token it sent or got)."""
    if echo:
        ids, logprobs = prompt_ids + completion_ids, [None] + [s.logprob for s in scores]
        tops = [None] + [_top_dict(token_text, s, top) for s in scores]
        offset = 0
    else:
        tail = scores[len(prompt_ids) - 1:]
        ids, logprobs, tops = completion_ids, [s.logprob for s in tail], [_top_dict(token_text, s, top) for s in tail]
        offset = prompt_chars
    tokens = [token_text(t) for t in ids]
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token)
    return {"tokens": tokens, "token_logprobs": logprobs, "top_logprobs": tops, "text_offset": offsets}


def chat_logprobs(token_text: TokenText, completion_ids: list[int], scores: list[TokenScore], top: int) -> dict:
    """``scores`` start at the completion's first token; only the tokens that spell the content are listed."""
    content = []
    for token_id, score in zip(completion_ids, scores):
        text = token_text(token_id)
        content.append({"token": text, "logprob": score.logprob, "bytes": list(text.encode()),
                        "top_logprobs": [{"token": (t := token_text(i)), "logprob": lp, "bytes": list(t.encode())}
                                         for i, lp in score.top[:top]]})
    return {"content": content, "refusal": None}


def _top_dict(token_text: TokenText, score: TokenScore, top: int) -> dict[str, float]:
    best: dict[str, float] = {}
    for token_id, logprob in score.top[:top]:
        best.setdefault(token_text(token_id), logprob)
    return best

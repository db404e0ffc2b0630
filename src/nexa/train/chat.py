"""Chat rows: a ``messages`` column (OpenAI roles) rendered with the tokenizer's own chat template.

The loss falls only on assistant tokens: each assistant turn's character span is found by rendering
the conversation up to that turn (with the generation prompt) and through it, and a token is
supervised when it starts inside such a span (the turn's end-of-turn token included, so the model
learns to stop). A sample always ends with the tokenizer's EOS id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nexa.train.tokenizer import TokenizerError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

ROLES = ("system", "developer", "user", "assistant", "tool")


def validate_messages(messages: Any, field: str = "messages") -> list[dict[str, str]]:
    """The conversation as ``[{role, content}]``; ValueError names the bad turn and the known roles."""
    if hasattr(messages, "tolist"):
        messages = messages.tolist()
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"field {field!r}: expected a non-empty list of {{role, content}} turns, got {type(messages).__name__}")
    turns = []
    for index, turn in enumerate(messages):
        if not isinstance(turn, dict) or not isinstance(turn.get("content"), str):
            raise ValueError(f"field {field!r} turn {index}: expected {{'role': ..., 'content': str}}, got {turn!r:.80}")
        if turn.get("role") not in ROLES:
            raise ValueError(f"field {field!r} turn {index}: unknown role {turn.get('role')!r}; use one of {list(ROLES)} (OpenAI roles)")
        turns.append({"role": turn["role"], "content": turn["content"]})
    return turns


def render_chat(tokenizer: "PreTrainedTokenizerBase", messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    """The conversation as text through the tokenizer's own chat template."""
    from jinja2 import TemplateError

    if not getattr(tokenizer, "chat_template", None):
        raise TokenizerError("the tokenizer has no chat template, so `messages` rows cannot be rendered; set "
                             "tokenizer.chat_template and save_pretrained it (or use prompt/answer columns)")
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    except TemplateError as exc:
        raise ValueError(f"the chat template refused this conversation: {exc}") from exc


def encode_chat(tokenizer: "PreTrainedTokenizerBase", messages: Any) -> tuple[list[int], list[int]]:
    """(ids, labels) of a rendered conversation with labels only on assistant turns, ending with EOS."""
    turns = validate_messages(messages)
    if not any(t["role"] == "assistant" for t in turns):
        raise ValueError("field 'messages': no assistant turn, so there is nothing to learn")
    text = render_chat(tokenizer, turns, add_generation_prompt=False)
    spans = []
    for index, turn in enumerate(turns):
        if turn["role"] != "assistant":
            continue
        before = render_chat(tokenizer, turns[:index], add_generation_prompt=True) if index else ""
        through = render_chat(tokenizer, turns[: index + 1], add_generation_prompt=False).rstrip()
        if not (text.startswith(before) and text.startswith(through) and len(through) > len(before)):
            raise ValueError("the chat template renders earlier turns differently once later ones follow; "
                             "assistant tokens cannot be located for the loss")
        spans.append((len(before), len(through)))
    text = text[: spans[-1][1]]  # nothing after the last assistant turn is trained or kept
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    labels = [token if any(start <= begin < end for start, end in spans) else -100
              for token, (begin, _) in zip(ids, encoded["offset_mapping"])]
    if not ids or ids[-1] != tokenizer.eos_token_id:
        ids.append(tokenizer.eos_token_id)
        labels.append(tokenizer.eos_token_id)
    return ids, labels


def prompt_messages(messages: Any) -> list[dict[str, str]]:
    """The turns before the last assistant turn: what a teacher is asked to continue."""
    turns = validate_messages(messages)
    last = max((i for i, t in enumerate(turns) if t["role"] == "assistant"), default=len(turns))
    return turns[:last]

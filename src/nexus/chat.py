"""Chat prompts from a bundle's own chat template (``tokenizer/tokenizer_config.json`` or ``chat_template.jinja``).

The whole conversation is rendered the way the model was trained (the lab renders training rows with
the same template through transformers, which uses a sandboxed Jinja2 environment like this one).
A bundle whose tokenizer declares no template is a completion model: its prompt is the last user
message, as documented in the model card.
"""

from __future__ import annotations

import json
from pathlib import Path

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from nexus.errors import BundleError

ROLES = ("system", "developer", "user", "assistant", "tool")


class ChatTemplate:
    """A compiled chat template plus the special-token strings it refers to."""

    def __init__(self, source: str | None, specials: dict[str, str], bos_in_text: bool):
        self.source, self.specials, self.bos_in_text = source, specials, bos_in_text
        self._template = None
        if source:
            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.globals["raise_exception"] = _raise
            self._template = env.from_string(source)

    @classmethod
    def load(cls, tokenizer_dir: Path, tokenizer) -> ChatTemplate:
        config_file = tokenizer_dir / "tokenizer_config.json"
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
        source = config.get("chat_template")
        if (tokenizer_dir / "chat_template.jinja").is_file():
            source = (tokenizer_dir / "chat_template.jinja").read_text(encoding="utf-8")
        specials = {name: _token_text(config.get(name)) for name in ("bos_token", "eos_token", "pad_token", "unk_token")}
        # a tokenizer whose post-processor adds BOS itself must not get it from the text as well
        bos_in_text = not tokenizer.encode("").ids
        return cls(source if isinstance(source, str) else None, specials, bos_in_text)

    def render(self, messages: list[dict]) -> str:
        """The conversation, ready for the assistant's reply (``add_generation_prompt``)."""
        for index, message in enumerate(messages):
            if message.get("role") not in ROLES:
                raise ValueError(f"messages[{index}]: unknown role {message.get('role')!r}; use one of {list(ROLES)}")
        if self._template is None:
            return next(m["content"] for m in reversed(messages) if m["role"] == "user")
        specials = dict(self.specials)
        if not self.bos_in_text:
            specials["bos_token"] = ""
        try:
            return self._template.render(messages=messages, add_generation_prompt=True, **specials)
        except TemplateError as error:
            raise ValueError(f"the bundle's chat template refused this conversation: {error}") from error


def _token_text(value) -> str:
    if isinstance(value, dict):  # {"content": "<s>", ...} as older save_pretrained writes it
        value = value.get("content")
    return value if isinstance(value, str) else ""


def _raise(message: str):
    raise TemplateError(message)


def check_chat_template(tokenizer_dir: Path, tokenizer) -> ChatTemplate:
    try:
        return ChatTemplate.load(tokenizer_dir, tokenizer)
    except (json.JSONDecodeError, TemplateError) as error:
        raise BundleError(f"{tokenizer_dir}: unreadable chat template ({error})") from error

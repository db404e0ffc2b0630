"""Opening a teacher from what a user typed: an OpenAI-compatible API root or a local checkpoint folder.

Every command that takes ``--teacher`` (``nexa distill materialize``, ``nexa data augment``) opens it here,
so the same words mean the same teacher everywhere and a misuse gets the same message.
"""

from __future__ import annotations

import os
from pathlib import Path

from nexa.teachers.options import DEFAULT_KEY_ENV
from nexa.teachers.protocol import Teacher


class TeacherSpecError(ValueError):
    """A teacher named in a way that cannot work; ``option`` is the command-line option to blame."""

    def __init__(self, message: str, option: str):
        super().__init__(message)
        self.option = option


def open_teacher(target: str, model: str | None, *, api: str = "chat", key_env: str | None = None,
                 system: str | None = None, timeout_s: float = 60.0, batch_size: int = 32) -> Teacher:
    """An API teacher for an http(s) URL, a local model for a folder; every misuse is a TeacherSpecError."""
    if target.startswith(("http://", "https://")):
        from nexa.teachers.openai_api import OpenAITeacher

        if not model:
            raise TeacherSpecError("a URL teacher needs --teacher-model NAME (the model served there)", "--teacher-model")
        if system and api != "chat":
            raise TeacherSpecError("--system needs --api chat (completions have no system message)", "--system")
        try:
            return OpenAITeacher(target, model, api_key=api_key(key_env), api=api, timeout_s=timeout_s)
        except ValueError as exc:
            raise TeacherSpecError(str(exc), "--api") from None
    path = Path(target)
    if not path.is_dir():
        from nexa.train.sources import ModelSourceError, is_hub_id, resolve_model_source

        if not is_hub_id(target):
            raise TeacherSpecError(f"{target} is neither an http(s) URL, a folder nor a hub id (org/name)", "--teacher")
        try:
            path = resolve_model_source(target, "--teacher")  # a hub id, through the HF cache
        except ModelSourceError as exc:
            raise TeacherSpecError(str(exc), "--teacher") from None
    if system:
        raise TeacherSpecError("a local teacher takes raw prompts; --system is for chat APIs", "--system")
    from nexa.teachers.local import LocalHFTeacher

    try:
        return LocalHFTeacher(path, batch_size=batch_size)
    except (FileNotFoundError, ValueError) as exc:
        raise TeacherSpecError(str(exc), "--teacher") from None


def api_key(key_env: str | None) -> str | None:
    """The key's value from the environment; a variable named explicitly must be set."""
    name = key_env or DEFAULT_KEY_ENV
    value = os.environ.get(name)
    if key_env and not value:
        raise TeacherSpecError(f"environment variable {key_env} is not set (or empty)", "--api-key-env")
    return value or None

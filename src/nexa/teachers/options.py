"""The command-line options of a teacher call, declared once for every command that asks a teacher
(``nexa distill materialize``, ``nexa data augment``): the same flag means the same thing everywhere.

Only Typer is imported here, so a command module can use them at its top level and still start fast.
"""

from __future__ import annotations

from typing import Optional

import typer

DEFAULT_KEY_ENV = "OPENAI_API_KEY"

TEACHER_CALL = {
    "teacher_model": (Optional[str], typer.Option(None, "--teacher-model", help="Model name at the API (required for a URL).")),
    "api": (str, typer.Option("chat", "--api", help="chat (/chat/completions) or completions (/completions).")),
    "api_key_env": (Optional[str], typer.Option(None, "--api-key-env", help="Environment variable holding the API key "
                                                f"(default {DEFAULT_KEY_ENV}, optional).")),
    "system": (Optional[str], typer.Option(None, "--system", help="System message (chat API only).")),
    "max_tokens": (int, typer.Option(256, "--max-tokens", min=1)),
    "temperature": (float, typer.Option(0.0, "--temperature", min=0.0)),
    "timeout_s": (float, typer.Option(60.0, "--timeout-s", min=0.01, help="Seconds before a silent call counts as failed.")),
}

"""The command-line options of a teacher call, declared once for every command that asks a teacher
(``nexa distill materialize``, ``nexa data augment``): the same flag means the same thing everywhere.

Only Typer and the pydantic model of the generation parameters are imported here, so a command module can use them
at its top level and still start fast.
"""

from __future__ import annotations

from typing import Optional

import typer

from nexa.ledger.console import model_options
from nexa.teachers.protocol import GenerationParams

DEFAULT_KEY_ENV = "OPENAI_API_KEY"

TEACHER_CALL = {
    "teacher_model": (Optional[str], typer.Option(None, "--teacher-model", help="Model name at the API (required for a URL).")),
    "api": (str, typer.Option("chat", "--api", help="chat (/chat/completions) or completions (/completions).")),
    "api_key_env": (Optional[str], typer.Option(None, "--api-key-env", help="Environment variable holding the API key "
                                                f"(default {DEFAULT_KEY_ENV}, optional).")),
    "system": (Optional[str], typer.Option(None, "--system", help="System message (chat API only).")),
    **model_options(GenerationParams, max_tokens="--max-tokens", temperature="--temperature"),
    "timeout_s": (float, typer.Option(60.0, "--timeout-s", min=0.01, help="Seconds before a silent call counts as failed.")),
    "batch_size": (int, typer.Option(32, "--batch-size", min=1, help="Prompts per batch (a local teacher's generate() call).")),
}

"""Run ids in the spec's form (``2025-10-28_141200``) plus a short random suffix against collisions."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone

RUN_ID_PATTERN = re.compile(r"^(\d{4}-\d{2}-\d{2}_\d{6})-([0-9a-f]{4,12})$")


def new_run_id(now: datetime | None = None) -> str:
    """A sortable UTC timestamp id; the suffix keeps two runs started in the same second apart."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%d_%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


def parse_run_id(run_id: str) -> datetime:
    """The UTC start time encoded in a run id; raises ValueError naming the expected form."""
    match = RUN_ID_PATTERN.match(run_id)
    if not match:
        raise ValueError(f"run id {run_id!r} is not of the form YYYY-MM-DD_HHMMSS-xxxxxx")
    return datetime.strptime(match.group(1), "%Y-%m-%d_%H%M%S").replace(tzinfo=timezone.utc)

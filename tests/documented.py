"""The ``nexa`` command lines written in the README and docs/: what the docs tests check and run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def documented_lines() -> list[tuple[str, str]]:
    """(doc file name, command line) for every ``nexa ...`` line in a code block or inline code, placeholders left out."""
    found = []
    for doc in DOCS:
        text = doc.read_text()
        blocks = re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, flags=re.S)
        lines = [line for block in blocks for line in block.splitlines()] + re.findall(r"`((?:\.venv/bin/)?nexa [^`]+)`", text)
        for line in lines:
            line = line.split("  #")[0].strip().removeprefix(".venv/bin/")
            if line.startswith("nexa ") and "<" not in line and "..." not in line and "|" not in line and "[" not in line:
                found.append((doc.name, line.rstrip("\\").strip()))
    return sorted(set(found))

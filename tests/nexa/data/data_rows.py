"""Helpers shared by the data layer's tests: row builders and a JSONL writer."""

import json


def qa(prompt, answer="1", capability="reasoning", **extra):
    return {"prompt": prompt, "answer": answer, "capability": capability, **extra}


def write_jsonl(path, rows):
    """Rows are dicts (written as JSON) or raw strings (written as they are, for broken lines)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path

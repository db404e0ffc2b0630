"""Small input files with known bad rows for the data layer's tests."""

import pytest
from data_rows import qa, write_jsonl


@pytest.fixture
def mixed_jsonl(tmp_path):
    """200 good distinct rows with 6 bad ones spread through, so both the fast and per-line paths run."""
    rows = [qa(f"question number {i} about topic {i % 7}", str(i)) for i in range(200)]
    bad = {
        10: '{"prompt": "p", "answer": 5, "capability": "reasoning"}',
        50: "{not json",
        90: qa("", "1"),
        120: {"prompt": "no capability", "answer": "1"},
        150: qa("extra field", "1", surprise=True),
        199: "[1, 2, 3]",
    }
    lines = []
    for i, row in enumerate(rows):
        lines.append(bad.get(i, row))
    return write_jsonl(tmp_path / "mixed.jsonl", lines)

"""Property-based: random malformed rows and files never raise, and every row read is accounted for."""

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from nexa.data.prepare import prepare
from nexa.data.schema import load_schema
from nexa.ledger import Lab

json_values = st.recursive(st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=6)
texts = st.text(st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=30)
good_rows = st.fixed_dictionaries({"prompt": texts, "answer": texts, "capability": texts},
                                  optional={"domain": st.none() | texts, "split": st.sampled_from(["train", "eval", "nope", None])})
odd_rows = st.dictionaries(st.sampled_from(["prompt", "answer", "capability", "domain", "split", "extra"]), json_values, max_size=6)
lines = st.one_of(
    good_rows.map(json.dumps).map(str.encode),
    odd_rows.map(json.dumps).map(str.encode),
    json_values.map(json.dumps).map(str.encode),
    texts.map(lambda t: t.replace("\n", " ").replace("\r", " ").encode()),
    st.binary(max_size=20).map(lambda b: b.replace(b"\n", b" ").replace(b"\r", b" ")),
    st.just(b""),
)
FILTERS = ["exact", "near", "quality", "safety", "unphysical"]


@pytest.fixture(autouse=True, scope="module")
def tiny_segments():
    """Send even small files through pyarrow's block reader (and its bisection), not only the per-line path."""
    import nexa.data.loaders as loaders

    saved, loaders._SLOW_SEGMENT = loaders._SLOW_SEGMENT, 2
    yield
    loaders._SLOW_SEGMENT = saved


def _as_read(raw_lines: list[bytes]) -> list[bytes]:
    """The lines as a reader sees them: a UTF-8 byte-order mark at the very start of a file is not content."""
    if raw_lines and raw_lines[0].startswith(b"\xef\xbb\xbf"):
        return [raw_lines[0][3:], *raw_lines[1:]]
    return raw_lines


def _expected_bad(raw_lines: list[bytes]) -> int:
    """Independent count with json.loads + jsonschema per line (blank lines are not rows)."""
    schema, bad = load_schema("qa"), 0
    for raw in raw_lines:
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except ValueError:
            bad += 1
            continue
        bad += not isinstance(row, dict) or schema.first_error(row) is not None
    return bad


@seed(42)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(files=st.lists(st.lists(lines, min_size=0, max_size=90), min_size=1, max_size=3), duplicate=st.booleans())
def test_random_malformed_files_keep_the_ledger(files, duplicate):
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab.init(Path(tmp) / "lab")
        paths = []
        for i, content in enumerate(files):
            content = content + content[: len(content) // 2] if duplicate else content
            path = Path(tmp) / f"in{i}.jsonl"
            path.write_bytes(b"\n".join(content) + (b"\n" if content else b""))
            paths.append((path, content))
        result = prepare(lab, [str(p) for p, _ in paths], load_schema("qa"), "prop", filters=FILTERS, run_id="prop")
        for path, content in paths:
            counts = result.counts[str(path)]
            assert counts.balanced(), counts
            assert counts.read == sum(1 for raw in _as_read(content) if raw.strip())
            assert counts.quarantined == _expected_bad(_as_read(content))
        totals = result.totals()
        assert totals["read"] == totals["written"] + totals["quarantined"] + sum(totals["removed"].values())
        if result.manifest is None:
            assert totals["written"] == 0 or result.problem
        else:
            assert result.manifest.rows == totals["written"]


@settings(max_examples=25, deadline=None)
@given(cells=st.lists(st.lists(st.text(max_size=6), min_size=1, max_size=5), max_size=25))
def test_random_csv_files_keep_the_ledger(cells):
    import csv

    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab.init(Path(tmp) / "lab")
        path = Path(tmp) / "in.csv"
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["prompt", "answer", "capability"])
            writer.writerows(cells)
        result = prepare(lab, [str(path)], load_schema("qa"), "csvprop", filters=["exact", "quality"], run_id="p")
        counts = result.counts[str(path)]
        assert counts.balanced()
        assert counts.read == len(cells)

"""The SFT baseline's small labelled set: the first N training rows of each capability, nothing else."""

import pytest

from nexa.train.stages import labelled_rows


def test_labelled_rows_keeps_the_first_n_of_each_capability_in_order():
    rows = [{"capability": c, "prompt": f"{c}{i}"} for i in range(5) for c in ("a", "b")]
    kept = labelled_rows(rows, 2)
    assert [r["prompt"] for r in kept] == ["a0", "b0", "a1", "b1"]
    assert labelled_rows(rows, None) == rows
    with pytest.raises(ValueError, match="at least 1"):
        labelled_rows(rows, 0)

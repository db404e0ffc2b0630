"""nexa.ledger.lean_arrow: pyarrow's pandas look answered once; pandas stays importable where it is really needed."""

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

SRC = Path(__file__).resolve().parents[3] / "src"


def test_arrow_without_pandas_leaves_pandas_importable_for_to_pandas():
    code = ("import sys; from nexa.ledger.lean_arrow import arrow_without_pandas; import pyarrow as pa; "
            "taken = arrow_without_pandas(); t = pa.table({'a': [1, None]}); assert 'pandas' not in sys.modules; "
            "frame = t.to_pandas(); print(taken, len(frame), 'pandas' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "2", "True"]
    if "pandas" in sys.modules:  # in this (pytest) process pandas is already there: nothing to answer
        from nexa.ledger.lean_arrow import arrow_without_pandas

        assert arrow_without_pandas() is False
        assert pa.array([1, 2]).to_numpy().tolist() == [1, 2]
    else:
        pytest.skip("pandas not loaded in this process")

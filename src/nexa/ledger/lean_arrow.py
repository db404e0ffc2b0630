"""pyarrow without pandas, for commands whose process converts no pandas objects (start-up time).

pyarrow imports pandas (≈ 0.25 s, more than pyarrow itself) the first time a Python or numpy value
becomes an Arrow array or scalar, or an array becomes numpy, only to recognise pandas objects. Both of
its checks (the Python shim and the C++ side) look once and remember the answer.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pyarrow as pa


def arrow_without_pandas() -> bool:
    """Let pyarrow's pandas checks see "no pandas" in a process that holds no pandas objects; True when it took.

    pandas is made unimportable for pyarrow's two first looks only (the shim's ``have_pandas`` and the
    C++ side's, taken by one tiny ``to_numpy``); both remember "no pandas" and never import it for a
    check again. Anything that really needs pandas later (``to_pandas``) still imports it, as pyarrow
    retries on those paths. The price: in this process pyarrow no longer recognises pandas objects
    (``pa.array(pd.Series(...))``, ``pd.NA``), so only commands that convert none may call this (``nexa
    data prepare|show``, ``nexa eval analyze``). Does nothing when pandas is already imported or this
    pyarrow keeps no shim where this looks.
    """
    shim = getattr(pa.lib, "_pandas_api", None)
    if "pandas" in sys.modules or shim is None:
        return False
    sys.meta_path.insert(0, _NoPandas)  # `import pandas` fails, for the shim's first look only
    try:
        seen = shim.have_pandas
        pa.array(np.zeros(1, dtype=np.int64)).to_numpy(zero_copy_only=False)  # the C++ side's one look
    finally:
        sys.meta_path.remove(_NoPandas)
    return not seen


class _NoPandas:
    """A meta-path finder that refuses pandas (and only pandas)."""

    @staticmethod
    def find_spec(name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError(f"{name} is kept out of this process's Arrow calls (nexa.ledger.lean_arrow.arrow_without_pandas)")
        return None

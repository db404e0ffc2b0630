"""How the data engine uses the machine: worker threads for blocks of rows, and the Arrow memory pool.

* Threads: pyarrow's kernels, numpy and RE2 let go of the GIL, so blocks of a file are parsed and
  validated side by side (:func:`ordered_map`); results come back in input order.
* Garbage collection: quarantine records are many small dicts that never form cycles, yet each
  allocation burst makes Python's cycle collector walk them all again; :func:`gc_paused` holds it off
  while a batch stream runs.
* Memory: the engine allocates and frees hundreds of MB of short-lived Arrow buffers per million rows.
  pyarrow's default pool (mimalloc) hands freed pages back to the OS almost at once, so each new
  buffer pays for page faults again; on a VM that was about 60% of a cold ``prepare``'s time.
  :func:`use_engine_pool` makes jemalloc (or, when pyarrow lacks it, the system allocator) the
  default pool, which keeps freed pages for reuse. Set ``ARROW_DEFAULT_MEMORY_POOL`` to keep your
  own choice; ``NEXA_DATA_THREADS`` sets the number of worker threads.
* Start-up: pyarrow imports pandas (≈ 0.25 s) the first time any Python or numpy value becomes an Arrow
  array or scalar, only to ask whether it is a pandas object. :func:`arrow_without_pandas` answers that
  question once, for processes that hold no pandas objects (the ``nexa data`` commands).
"""

from __future__ import annotations

import gc
import os
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa

WORKERS = int(os.environ.get("NEXA_DATA_THREADS") or min(4, os.cpu_count() or 1))


def ordered_map(function: Callable[[Any], Any], items: Iterable[Any], workers: int | None = None) -> Iterator[Any]:
    """``map(function, items)`` on ``workers`` threads (default :data:`WORKERS`), results in input order.

    At most ``workers`` items run ahead of the one being consumed, so a long input streams through
    in bounded memory; with one worker it is plain ``map`` on the calling thread.
    """
    workers = WORKERS if workers is None else workers
    if workers <= 1:
        yield from map(function, items)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="nexa-data") as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def use_engine_pool() -> str:
    """Make jemalloc (else the system allocator) pyarrow's default pool, unless the user chose one; returns its name."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return pa.default_memory_pool().backend_name
    if pa.default_memory_pool().backend_name == "mimalloc":
        try:
            pool = pa.jemalloc_memory_pool()
        except NotImplementedError:
            pool = pa.system_memory_pool()
        pa.set_memory_pool(pool)
    return pa.default_memory_pool().backend_name


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cycle collector off inside the block (back on after, if it was on)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def arrow_without_pandas() -> bool:
    """Let pyarrow's pandas check see "no pandas" in a process that holds no pandas objects; True when it took.

    pyarrow asks its pandas shim, on every ``pa.array``/``pa.scalar`` (and so every compute call with a
    Python literal), whether the value is a pandas object, importing pandas the first time (≈ 0.25 s of a
    command's start-up). With pandas not importable for that one first check, the shim records "no
    pandas" and stops asking; anything that really needs pandas later (``to_pandas``) imports it then,
    as pyarrow retries on those paths. Only for the data commands: a process that builds Arrow arrays
    *from* pandas objects must not call this. Does nothing when pandas is already imported or the shim
    is not where this pyarrow keeps it.
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
            raise ImportError(f"{name} is kept out of this process's Arrow calls (nexa.data.runtime.arrow_without_pandas)")
        return None

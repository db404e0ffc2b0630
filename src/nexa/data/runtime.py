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
  own choice; ``NEXA_DATA_THREADS`` sets the number of worker threads. It also stops numpy asking
  for transparent huge pages: each first touch of a 2 MB page is a zeroed (often compacted) 2 MB in
  the kernel, ≈ 2 s of system time per million rows in the split's scratch arrays on this VM, against
  ≈ 0.3 s with 4 KB pages (``NUMPY_MADVISE_HUGEPAGE`` keeps your own choice).
* Start-up: see :func:`nexa.ledger.lean_arrow.arrow_without_pandas` (the data commands call it).
"""

from __future__ import annotations

import gc
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

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
    """Make jemalloc (else the system allocator) pyarrow's default pool, unless the user chose one; returns its name.

    numpy's large arrays go back to plain pages unless ``NUMPY_MADVISE_HUGEPAGE`` says otherwise (see the module doc).
    """
    if os.environ.get("NUMPY_MADVISE_HUGEPAGE") is None:
        try:
            from numpy._core.multiarray import _set_madvise_hugepage
        except ImportError:  # numpy 1.x
            from numpy.core.multiarray import _set_madvise_hugepage
        _set_madvise_hugepage(False)  # what NUMPY_MADVISE_HUGEPAGE=0 sets when numpy is imported
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



_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory(trim_bytes: int = 512 << 20, mmap_bytes: int = 32 << 20) -> bool:
    """Tell glibc's malloc to keep freed memory for reuse in this process; True when it took.

    numpy's scratch arrays (a few MB each, allocated and freed per chunk on the worker threads) otherwise
    often go to fresh ``mmap`` pages and back, and every first touch of a page is a fault in the kernel
    (≈ a quarter of ``nexa data prepare``'s page faults at 200k rows). Blocks up to ``mmap_bytes`` come from
    the heap, and up to ``trim_bytes`` of freed heap stays mapped. Process-wide, so only a short-lived
    command calls it (``nexa data prepare``), never a library path: a long training process keeps glibc's
    defaults. Does nothing when the user set ``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_MMAP_THRESHOLD_``, or
    off glibc.
    """
    if os.environ.get("MALLOC_TRIM_THRESHOLD_") or os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return False
    if os.name != "posix":
        return False
    import ctypes

    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # the C library this process already runs on
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_bytes)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_bytes))

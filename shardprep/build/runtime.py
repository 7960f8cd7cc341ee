"""Process settings for the length of a build: Arrow's memory pool and Python's cyclic collector.

Both are process-wide, so each is set when a build starts working (not for an up-to-date one)
and put back when it ends; forked pool workers inherit them. Measured on 45.8 M chat tokens,
Qwen3, 2 workers, 2 cores (`python bench/bench_build.py`, and A/B runs of `prep build --force`).

Arrow's pool. pyarrow's default (mimalloc) asks the kernel for transparent huge pages. Where the
kernel makes room for them on demand (`defrag` = madvise, a common default), a fresh 2 MB page
can stall for the compaction that frees one: merging 4 M tokens of unit shards into one table
(`combine_chunks`, 50 MB) took 0.11 s of system time on such runs against 0.007 s on others;
jemalloc's 4 KB pages take a steady 0.03 s. A build allocates a few times its output in fresh
buffers (scratch written and read back, merged tables, Parquet pages), so it runs on jemalloc
where pyarrow has it. A pool the user chose ($ARROW_DEFAULT_MEMORY_POOL) is left alone; buffers
keep the pool that made them, so putting the old default back is safe.

The collector. A build makes millions of short-lived containers (parsed rows, messages, chunks)
and few cycles, and every young collection also walks what the interpreter loaded at start-up.
Everything alive when the build starts is frozen (never walked again, and never written to by
the collector in a forked worker, so those pages stay shared), and young collections run after
50,000 allocations instead of 700: the cyclic collector was about 9 % of a build's CPU time.
Cycles are still collected.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator

ARROW_POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"
GC_THRESHOLD = (50_000, 20, 100)


@contextlib.contextmanager
def build_runtime() -> Iterator[None]:
    """jemalloc as Arrow's default pool and a frozen, less frequent collector (see the module)."""
    with _arrow_pool(), _collector():
        yield


@contextlib.contextmanager
def _arrow_pool() -> Iterator[None]:
    if os.environ.get(ARROW_POOL_ENV):
        yield
        return
    import pyarrow as pa

    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:  # a pyarrow built without it (Windows wheels)
        yield
        return
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pool)
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


@contextlib.contextmanager
def _collector() -> Iterator[None]:
    previous, enabled = gc.get_threshold(), gc.isenabled()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    gc.enable()  # `prep build` turns it off while it starts (shardprep/cli/build.py)
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()
        if not enabled:
            gc.disable()

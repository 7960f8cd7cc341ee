"""The local engine: units in this process (one worker) or on a process pool (several).

Where the platform forks (Linux), the pool's processes are forked from this one after it has
loaded the tokenizer, renderer and encoder (and run the encoder's probe), so a worker starts with
all of it in memory and begins on its first unit at once: parsing a real vocabulary costs
fastokens two to three CPU-seconds per process, tokenizers most of a second. Elsewhere the pool
spawns processes that each load their own. A worker runs one tokenizer thread (the pool is the
parallelism; threads on top would oversubscribe the cores) and handles whole units. Units are
submitted in order with a bounded number in flight, so memory does not grow with the input.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

# Units (the encoder, pyarrow) load where a unit runs, and multiprocessing where a pool starts: an
# up-to-date build resolves its engine and returns without them.
if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor

    from shardprep.build.units import UnitContext, UnitResult, WorkUnit

_CTX: UnitContext | None = None


def _init_worker(ctx: UnitContext) -> None:
    global _CTX
    os.environ["RAYON_NUM_THREADS"] = "1"  # before the tokenizer's thread pool first starts
    _CTX = ctx
    if ctx._loaded is not None:
        # Forked: the tokenizer, renderer and encoder are the driver's, but not its output, whose
        # object-store filesystem runs on an event loop thread that does not exist here (fsspec
        # refuses it: "not fork-safe"). A fresh one is made in this process.
        from shardprep.store.storage import Output

        renderer, encoder, _ = ctx._loaded
        output = Output(ctx.output_url, storage_options=ctx.recipe.output_storage_options)
        ctx._loaded = (renderer, encoder, output)
    ctx.loaded()  # a forked worker has it already; a spawned one loads it here


def _start_method() -> str:
    """fork where it is the platform's own default (Linux): workers inherit what this process
    loaded. The parent runs no thread of its own at the fork (the encoder's load has finished, the
    progress display starts after), and `tokenizers` turns its own parallelism off in a forked
    child. Elsewhere (macOS, Windows) spawn."""
    import multiprocessing

    return (
        "fork"
        if "fork" in multiprocessing.get_all_start_methods()
        and os.name == "posix"
        and not _is_macos()
        else "spawn"
    )


def _is_macos() -> bool:
    import sys

    return sys.platform == "darwin"


def _run(unit: WorkUnit) -> UnitResult:
    from shardprep.build.units import run_unit

    assert _CTX is not None, "worker not initialized"
    return run_unit(_CTX, unit)


def resolve_workers(workers: int | str | None) -> int:
    if workers in (None, "auto"):
        return max(
            1,
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else (os.cpu_count() or 1),
        )
    return max(1, int(workers))


def _open_pool(ctx: UnitContext, workers: int) -> ProcessPoolExecutor:
    """A pool of `workers` processes, started now."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    method = _start_method()
    if method == "fork":
        # Everything a unit needs, loaded (and the encoder probed) here once, for every worker:
        # the conformance template first, while the encoder's parse may still be running.
        from shardprep.tasks.conformance import prepare

        _, encoder, _ = ctx.loaded()
        prepare(encoder.tokenizer, ctx.conformance_rows or 0, ctx.recipe.renderer.name)
        _ = encoder.selection
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context(method),
        initializer=_init_worker,
        initargs=(ctx,),
    )
    # A forked pool starts all its processes at the first submit: do it now, with tokenizers'
    # "forked after parallelism" notice quieted (a forked child encodes on one thread anyway).
    saved = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        pool.submit(os.getpid).result()
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        if saved is None:
            del os.environ["TOKENIZERS_PARALLELISM"]
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = saved
    return pool


def _bounded(
    pool: ProcessPoolExecutor, units: Sequence[WorkUnit], *, in_flight: int
) -> Iterator[UnitResult]:
    from concurrent.futures import FIRST_COMPLETED, wait

    pending: set[Future[UnitResult]] = set()
    it = iter(units)
    try:
        for unit in it:
            pending.add(pool.submit(_run, unit))
            if len(pending) >= in_flight:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    yield f.result()
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                yield f.result()
    except BaseException:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        raise


class LocalEngine:
    """This process for one worker, else a process pool of `workers` processes (see the module)."""

    name = "local"

    def __init__(self, *, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def start(self, ctx: UnitContext, units: Sequence[WorkUnit]) -> None:
        """Start the pool now: before the driver runs threads of its own (the progress display),
        which a forked child must not inherit mid-write."""
        if self._pool is None and min(self.workers, len(units)) > 1:
            self._pool = _open_pool(ctx, min(self.workers, len(units)))

    def run(
        self, ctx: UnitContext, units: Sequence[WorkUnit], on_done: Callable[[UnitResult], None]
    ) -> None:
        """Run every unit; `on_done` is called in this process as each finishes (any order)."""
        from shardprep.build.units import run_unit

        workers = min(self.workers, len(units))
        pool, self._pool = self._pool, None
        if workers <= 1:
            if pool is not None:
                pool.shutdown(wait=True)
            for unit in units:
                on_done(run_unit(ctx, unit))
            return
        with pool or _open_pool(ctx, workers) as running:
            for result in _bounded(running, units, in_flight=2 * workers):
                on_done(result)

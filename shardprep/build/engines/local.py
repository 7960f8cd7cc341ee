"""The local engine: units in this process (one worker) or on a process pool (several).

Each pool process loads the tokenizer and renderer once, runs one tokenizer thread (the pool is the
parallelism; threads on top would oversubscribe the cores), and handles whole units. Units are
submitted in order with a bounded number in flight, so memory does not grow with the input.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import TYPE_CHECKING

# Units (the encoder, pyarrow) load where a unit runs: an up-to-date build resolves its engine
# and returns without them.
if TYPE_CHECKING:
    from shardprep.build.units import UnitContext, UnitResult, WorkUnit

_CTX: UnitContext | None = None


def _init_worker(ctx: UnitContext) -> None:
    global _CTX
    os.environ["RAYON_NUM_THREADS"] = "1"  # before the tokenizer's thread pool first starts
    _CTX = ctx
    ctx.loaded()


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


def run_units(
    ctx: UnitContext,
    units: Sequence[WorkUnit],
    *,
    workers: int,
    on_done: Callable[[UnitResult], None],
) -> None:
    """Run every unit; `on_done` is called in this process as each finishes (any order)."""
    from shardprep.build.units import run_unit

    workers = min(workers, len(units))
    if workers <= 1:
        for unit in units:
            on_done(run_unit(ctx, unit))
        return
    mp = multiprocessing.get_context("spawn")  # fork after tokenizers' threads have run is unsafe
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=mp, initializer=_init_worker, initargs=(ctx,)
    ) as pool:
        for result in _bounded(pool, units, in_flight=2 * workers):
            on_done(result)


def _bounded(
    pool: ProcessPoolExecutor, units: Sequence[WorkUnit], *, in_flight: int
) -> Iterator[UnitResult]:
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
    """This process for one worker, else a spawn-context process pool of `workers` processes."""

    name = "local"

    def __init__(self, *, workers: int) -> None:
        self.workers = workers

    def run(
        self, ctx: UnitContext, units: Sequence[WorkUnit], on_done: Callable[[UnitResult], None]
    ) -> None:
        run_units(ctx, units, workers=self.workers, on_done=on_done)

"""The Ray engine: the same work units as the local engine, run as Ray tasks on a local instance or
on an existing cluster (`address="auto"` or `"ray://host:port"`).

Why tasks and not an actor pool: Ray retries a task whose worker died (`max_retries`), which is the
whole fault story here. A unit is idempotent (shards go to names derived from the unit index,
written to a temporary file and then placed whole; the marker last), so a retried unit, even one
that died after placing some shards, ends byte-identical. Actors would need their own restart and
re-submission bookkeeping for the same result.

Each Ray worker process still loads the tokenizer and renderer once: the context is put in the
object store once per build and cached in the worker under a per-build key, so later units on the
same worker reuse the loaded tokenizer (`UnitContext.loaded()` memoizes it).

The driver keeps a bounded number of units in flight (twice the cluster's CPUs), so neither the
driver's memory nor the object store grows with the input, and calls `on_done` as units finish.
Units write their shards straight to the output (a local path on one node; s3:// or gs:// on a
cluster), so only small UnitResults travel back.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from shardprep.build.units import UnitContext, UnitResult, WorkUnit, run_unit
from shardprep.errors import BuildError, ShardprepError
from shardprep.store.storage import Output

RunUnit = Callable[[UnitContext, WorkUnit], UnitResult]

DEFAULT_MAX_RETRIES = (
    3  # attempts after a worker (or its node) died; errors in the data never retry
)

# Per worker process: (build key, context). One build at a time per worker is the common case;
# a new key replaces the old context (and its loaded tokenizer) instead of accumulating them.
_WORKER_CTX: tuple[str, UnitContext] | None = None


@dataclass
class _Failed:
    """A ShardprepError raised in a worker, returned as a value so the driver re-raises the very
    same exception (class, reason, file, line, field) rather than Ray's wrapper around it."""

    error: ShardprepError


def _worker_ctx(key: str, ctx: UnitContext) -> UnitContext:
    global _WORKER_CTX
    if _WORKER_CTX is None or _WORKER_CTX[0] != key:
        # One tokenizer thread per task: Ray schedules one task per CPU, so threads on top would
        # oversubscribe the cores (as in the local pool). Must be set before the tokenizer's
        # thread pool first starts in this process.
        os.environ["RAYON_NUM_THREADS"] = "1"
        _WORKER_CTX = (key, ctx)
    return _WORKER_CTX[1]


def _unit_task(key: str, ctx: UnitContext, unit: WorkUnit, run: RunUnit) -> UnitResult | _Failed:
    """Body of the Ray task (wrapped with `ray.remote` at submit time, so importing this module
    does not need ray)."""
    try:
        return run(_worker_ctx(key, ctx), unit)
    except ShardprepError as exc:
        return _Failed(exc)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # the optional extra is not installed
        raise BuildError(
            "engine 'ray' needs Ray: pip install 'shardprep[ray]' (on the driver and every node)"
        ) from exc
    return ray


def _connect(ray: Any, address: str | None, num_cpus: int | None) -> bool:
    """Connect to (or start) Ray; True when this call started it and must shut it down."""
    if ray.is_initialized():
        return False  # the caller (a notebook, a test, a Ray job) owns the connection
    if address is None and not os.environ.get("RAY_ADDRESS"):
        # A private single-node instance for this build.
        ray.init(num_cpus=num_cpus, include_dashboard=False)
    else:
        # An existing cluster: its size is the cluster's, not ours to choose.
        ray.init(address=address)
    return True


def _describe(unit: WorkUnit) -> str:
    return f"unit {unit.index} ({unit.file}, rows {unit.start}-{unit.stop})"


def _check_visible(output: Output, result: UnitResult, unit: WorkUnit) -> None:
    """A local output path on a multi-node cluster would leave shards on other nodes' disks:
    catch it at the first unit instead of writing a manifest that points at missing files."""
    for shards in result.shards.values():
        for s in shards:
            if not output.exists(s["path"]):
                raise BuildError(
                    f"{_describe(unit)} wrote {s['path']} where the driver cannot see it: "
                    f"on a multi-node Ray cluster the output must be an object store "
                    f"(s3://, gs://) or a filesystem shared by every node"
                )


def run_units_ray(
    ctx: UnitContext,
    units: Sequence[WorkUnit],
    *,
    address: str | None,
    on_done: Callable[[UnitResult], None],
    num_cpus: int | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    run: RunUnit | None = None,
) -> None:
    """Run every unit as a Ray task; `on_done` is called on the driver as each finishes (any order).

    address: None starts a private local Ray instance (with `num_cpus`), unless Ray is already
    initialized in this process or RAY_ADDRESS is set; "auto" or "ray://host:port" connects to a
    running cluster. A worker that dies is retried up to `max_retries` times; a ShardprepError
    raised by a unit (a bad row with `on_error: fail`) is re-raised here unchanged, and the units
    still in flight are cancelled. `run` is the per-unit function, `run_unit` by default (read at
    call time, so tests can wrap it to inject faults such as a worker killing itself).
    """
    if not units:
        return
    ray = _import_ray()
    started = _connect(ray, address, num_cpus)
    try:
        _run_all(ray, ctx, units, on_done=on_done, max_retries=max_retries, run=run or run_unit)
    finally:
        if started:
            ray.shutdown()


def _run_all(
    ray: Any,
    ctx: UnitContext,
    units: Sequence[WorkUnit],
    *,
    on_done: Callable[[UnitResult], None],
    max_retries: int,
    run: RunUnit,
) -> None:
    from ray.exceptions import RayError, RayTaskError

    task = ray.remote(_unit_task).options(
        num_cpus=1, max_retries=max_retries, retry_exceptions=False
    )
    key = uuid.uuid4().hex
    ctx_ref = ray.put(ctx)  # once, instead of pickling the context into every task
    run_ref = ray.put(run)
    in_flight = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    output = Output(ctx.output_url, storage_options=ctx.recipe.output_storage_options)
    check = output.is_local  # object stores are visible from every node by construction
    pending: dict[Any, WorkUnit] = {}
    queue = iter(units)

    def submit_more() -> None:
        while len(pending) < in_flight:
            unit = next(queue, None)
            if unit is None:
                return
            pending[task.remote(key, ctx_ref, unit, run_ref)] = unit

    try:
        submit_more()
        while pending:
            refs = list(pending)
            ready, _ = ray.wait(refs, num_returns=1)
            # Then everything else already finished, in one call: at thousands of units in flight,
            # one wait per result would make the driver, not the cluster, the bottleneck.
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            for ref in ready:
                unit = pending.pop(ref)
                try:
                    value = ray.get(ref)
                except RayTaskError as exc:
                    # A bug, not bad input: surface the worker's exception itself.
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, BaseException):
                        raise cause from exc
                    raise
                except RayError as exc:
                    # The worker or its node died more often than max_retries, ran out of memory,
                    # or the result was lost: the infrastructure failed, not the data.
                    raise BuildError(
                        f"{_describe(unit)} failed on Ray after {max_retries} retries: "
                        f"{type(exc).__name__}: {exc}; finished units are kept, so running the "
                        "build again resumes"
                    ) from exc
                if isinstance(value, _Failed):
                    raise value.error
                if check:
                    # Every unit: the next one may have run on another node. A local stat is cheap.
                    _check_visible(output, value, unit)
                on_done(value)
            submit_more()
    finally:
        for ref in pending:
            ray.cancel(ref, force=False)  # a failed build stops instead of finishing unused units


class RayEngine:
    """Units as Ray tasks: a private local instance (`address` None, `num_cpus`) or a cluster."""

    name = "ray"

    def __init__(self, *, address: str | None = None, num_cpus: int | None = None) -> None:
        self.address = address
        self.num_cpus = num_cpus

    def start(self, ctx: UnitContext, units: Sequence[WorkUnit]) -> None:
        """Nothing to do ahead: Ray starts (or joins) its cluster in `run`."""

    def run(
        self, ctx: UnitContext, units: Sequence[WorkUnit], on_done: Callable[[UnitResult], None]
    ) -> None:
        run_units_ray(ctx, units, address=self.address, on_done=on_done, num_cpus=self.num_cpus)

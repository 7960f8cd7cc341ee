"""Engines run work units: in this process or a local process pool (`local`), or on Ray (`ray`).

Every engine takes the same units and hands each `UnitResult` back to the driver as it finishes;
the build orders results by unit index, so output never depends on the engine. Engines are not
part of the fingerprint: they write the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from shardprep.errors import BuildError

if TYPE_CHECKING:  # types only: an up-to-date build picks its engine without loading units
    from shardprep.build.units import UnitContext, UnitResult, WorkUnit


class Engine(Protocol):
    name: str

    def start(self, ctx: UnitContext, units: Sequence[WorkUnit]) -> None:
        """Get ready to run `units` (start processes), before the driver shows progress."""
        ...

    def run(
        self, ctx: UnitContext, units: Sequence[WorkUnit], on_done: Callable[[UnitResult], None]
    ) -> None:
        """Run every unit; call `on_done` in the driver process as each finishes (any order)."""
        ...


ENGINES = ("local", "ray")


def make_engine(
    name: str, *, workers: int, address: str | None = None, ray_cpus: int | None = None
) -> Engine:
    """`workers`: processes for the local engine. `address` / `ray_cpus`: Ray only (see RayEngine)."""
    if name not in ENGINES:
        raise BuildError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")
    if address is not None and name != "ray":
        raise BuildError("an address is only used by engine 'ray'")
    if name == "ray":
        from shardprep.build.engines.ray_engine import RayEngine  # optional extra

        return RayEngine(address=address, num_cpus=ray_cpus)
    from shardprep.build.engines.local import LocalEngine

    return LocalEngine(workers=workers)

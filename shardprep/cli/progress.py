"""A rich progress bar for builds: rows/s, tokens/s, elapsed, ETA when the total is known."""

from __future__ import annotations

import time
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID


class RichProgress:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.task: TaskID | None = None
        self.rows = 0
        self.tokens = 0
        self.units_text = ""
        self.t0 = time.monotonic()

    @cached_property
    def progress(self) -> Progress:
        # Made when a build starts: an up-to-date build shows no bar and loads no rich.progress.
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        return Progress(
            TextColumn("[bold]building"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )

    def start(self, total_rows: int | None, *, done_rows: int = 0) -> None:
        self.t0 = time.monotonic()
        self.progress.start()
        if done_rows:
            self.console.print(f"resuming: {done_rows:,} of {total_rows or 0:,} rows already done")
        self.task = self.progress.add_task("build", total=total_rows, completed=done_rows, rate="")

    def advance(self, rows: int, tokens: int) -> None:
        self.rows += rows
        self.tokens += tokens
        if self.task is not None:
            self.progress.update(self.task, advance=rows, rate=self._rate())

    def _rate(self) -> str:
        dt = max(time.monotonic() - self.t0, 1e-9)
        return f"{self.rows / dt:,.0f} rows/s  {self.tokens / dt:,.0f} tok/s{self.units_text}"

    def units(self, done: int, total: int) -> None:
        """Units finished so far (resumed ones included); shown next to the rates."""
        self.units_text = f"  units {done:,}/{total:,}"
        if self.task is not None:
            self.progress.update(self.task, rate=self._rate())

    def finish(self) -> None:
        if not self.console.is_terminal:
            # A pipe or a CI log gets the bar once, at the end: as wide as its text needs, where
            # rich would assume 80 columns and cut the counts and times to "…".
            from rich.measure import Measurement

            wide = self.console.options.update_width(1 << 16)
            needed = Measurement.get(self.console, wide, self.progress.get_renderable()).maximum
            self.console.width = max(self.console.width, needed)
        self.progress.stop()

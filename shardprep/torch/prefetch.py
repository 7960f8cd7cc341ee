"""Prefetcher: make cache entries of the shards a reader is about to need, before it needs them.

Whoever knows the read order drives it: `ResumableLoader` from its sampler's epoch (indices or
batches, from the resumed position on), a packing loader from its plan. It gets the row indices in
the order they will be read, and is told how many of them have been handed out (`advance`):

    pf = dataset.prefetcher(rows_in_read_order).start()
    for ...:
        ...  # read rows
        pf.advance(rows_handed_out_so_far)
    pf.close()  # or `with dataset.prefetcher(order) as pf:`

The order is cut into runs of consecutive rows from one shard. Background threads make the entries
of the runs ahead of the current one (downloads and decodes, `ShardDataset.fetch`) while those fit
in the half of the cache limit that the reader's open maps leave (`dataset.py`), protecting them
from eviction. A run that finds no room waits until the reader moves on. A prefetch that fails is
left to the reader, which meets the same error itself and raises it: nothing is skipped silently.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from types import TracebackType

    from shardprep.torch.dataset import ShardDataset

log = logging.getLogger("shardprep.reader")


class Prefetcher:
    def __init__(
        self,
        dataset: ShardDataset,
        order: Iterable[int] | np.ndarray,
        *,
        threads: int = 4,
        max_ahead: int = 64,  # shards
    ) -> None:
        self.dataset = dataset
        rows = np.asarray(order if isinstance(order, np.ndarray) else list(order), dtype=np.int64)
        shards = dataset.shard_of(rows) if len(rows) else np.zeros(0, dtype=np.int64)
        change = np.flatnonzero(np.diff(shards)) + 1
        self._run_start = np.concatenate([[0], change]).astype(np.int64) if len(rows) else rows
        self._run_shard = shards[self._run_start] if len(rows) else rows
        self._budget = dataset.cache_limit - dataset.cache_limit // 2
        self._max_ahead = max_ahead
        self._threads_n = max(1, threads)
        self._cond = threading.Condition()
        self._consumed = 0
        self._next = 0  # the next run to claim
        self._retry: list[int] = []  # runs that found no room: tried again when the reader moves
        self._closed = False
        self._threads: list[threading.Thread] = []
        self.made = 0
        self.failed = 0

    # -- driven by the loader ----------------------------------------------------------------

    def start(self) -> Prefetcher:
        for i in range(self._threads_n):
            t = threading.Thread(target=self._work, name=f"shardprep-prefetch-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def advance(self, consumed: int) -> None:
        """`consumed` rows of the order have been handed out (a running total)."""
        with self._cond:
            if consumed > self._consumed:
                self._consumed = consumed
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for t in self._threads:
            t.join()
        self._threads = []
        self.dataset.upcoming = frozenset()

    def __enter__(self) -> Prefetcher:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the threads -------------------------------------------------------------------------

    def _current(self) -> int:
        return max(0, int(np.searchsorted(self._run_start, self._consumed, side="right")) - 1)

    def _window(self, cur: int) -> tuple[int, frozenset[str]]:
        """The runs [cur, end) whose shards fit the prefetch budget, and their entries. The
        current run's shard is the reader's (in the other half of the limit): not counted."""
        if cur >= len(self._run_shard):
            return cur, frozenset()
        seen: dict[int, None] = {int(self._run_shard[cur]): None}
        total = 0
        end = cur + 1
        while end < len(self._run_shard):
            k = int(self._run_shard[end])
            if k not in seen:
                est = int(self.dataset.shards[k]["estimate"])
                if total + est > self._budget or len(seen) > self._max_ahead:
                    break
                seen[k] = None
                total += est
            end += 1
        return end, frozenset(self.dataset.entry_path(k) for k in seen)

    def _claim(self) -> tuple[int, frozenset[str]] | None:
        with self._cond:
            while not self._closed:
                cur = self._current()
                end, keep = self._window(cur)
                self._retry = [r for r in self._retry if r >= cur]
                self.dataset.upcoming = keep
                if self._retry and self._retry[0] < end:
                    return self._retry.pop(0), keep
                self._next = max(self._next, cur)
                if self._next >= len(self._run_shard) and not self._retry:
                    return None
                if self._next < end:
                    self._next += 1
                    return self._next - 1, keep
                self._cond.wait(timeout=0.2)
            return None

    def _work(self) -> None:
        while (claimed := self._claim()) is not None:
            run, keep = claimed
            k = int(self._run_shard[run])
            try:
                ok = self.dataset.fetch(k, required=False, keep=keep)
            except Exception as exc:  # the reader meets it again and raises it
                log.debug("prefetch of %s failed: %s", self.dataset.shards[k]["path"], exc)
                with self._cond:
                    self.failed += 1
                continue
            with self._cond:
                if ok:
                    self.made += 1
                else:  # no room yet: after the reader's next step
                    self._retry.append(run)
                    self._retry.sort()
                    self._cond.wait(timeout=0.2)

"""ResumableLoader: a DataLoader whose state is the position the training loop has reached.

A sampler's own position runs ahead of training by the DataLoader's prefetch (prefetch_factor x
num_workers batches), so saving it would skip data on resume. This wrapper counts the batches it
has handed out and reports that as the position: exact for any worker count, before and after a
resume, because the batch sequence depends only on the sampler's seed, epoch and rank.

It also knows the rows it will read next (the sampler's epoch from the position on), so for a
`ShardDataset` it runs a `Prefetcher` that makes the cache entries of the coming shards on
background threads while the loop trains (`prefetch=`; by default when the build is remote or
larger than the cache limit). Prefetched entries sit in the shared cache folder, so DataLoader
workers find them there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset

from shardprep.torch.samplers import EpochSampler, TokenBudgetBatchSampler


class ResumableLoader:
    def __init__(
        self,
        dataset: Dataset[Any],
        *,
        batch_sampler: TokenBudgetBatchSampler | None = None,
        sampler: EpochSampler | None = None,
        batch_size: int = 1,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        num_workers: int = 0,
        prepare: bool = True,
        prefetch: bool | None = None,
        prefetch_threads: int = 4,
        **dataloader_kwargs: Any,
    ) -> None:
        if batch_sampler is not None and sampler is not None:
            raise ValueError("give batch_sampler or sampler, not both")
        can_prefetch = hasattr(dataset, "prefetcher")
        if prefetch is None:
            prefetch = can_prefetch and (
                getattr(dataset, "remote", False) or dataset.needed_bytes() > dataset.cache_limit  # type: ignore[attr-defined]
            )
        elif prefetch and not can_prefetch:
            raise ValueError("prefetch needs a dataset with prefetcher() (a ShardDataset)")
        self.prefetch = bool(prefetch)
        self.prefetch_threads = prefetch_threads
        self.prefetcher: Any = None
        # Decode shards into the cache once here, not once per worker racing on the same shard
        # (with prefetch, a Prefetcher does it in read order instead).
        if prepare and num_workers > 0 and hasattr(dataset, "prepare") and not self.prefetch:
            dataset.prepare()
        self.dataset = dataset
        self.sampler: TokenBudgetBatchSampler | EpochSampler
        if batch_sampler is not None:
            self.sampler = batch_sampler
            self._unit = 1  # sampler positions count batches
            self.loader = DataLoader(
                dataset,
                batch_sampler=batch_sampler,
                collate_fn=collate_fn,
                num_workers=num_workers,
                **dataloader_kwargs,
            )
        else:
            self.sampler = sampler if sampler is not None else EpochSampler(len(dataset))  # type: ignore[arg-type]
            self._unit = batch_size  # sampler positions count samples
            self.loader = DataLoader(
                dataset,
                sampler=self.sampler,
                batch_size=batch_size,
                collate_fn=collate_fn,
                num_workers=num_workers,
                **dataloader_kwargs,
            )
        self._position = self.sampler.resume_position

    def upcoming(self, start: int) -> tuple[np.ndarray, np.ndarray]:
        """The rows this epoch reads from position `start` on, in order, and the running total of
        rows after each batch."""
        if isinstance(self.sampler, TokenBudgetBatchSampler):
            batches = self.sampler.batches()[start:]
            order = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
            return order, np.cumsum([len(b) for b in batches], dtype=np.int64)
        order = self.sampler.indices()[start:]
        n = -(-len(order) // self._unit)
        ends = np.minimum(np.arange(1, n + 1, dtype=np.int64) * self._unit, len(order))
        return order, ends

    def __iter__(self) -> Iterator[Any]:
        start = self.sampler.resume_position
        end = len(self.sampler)
        self._position = start
        ends: np.ndarray | None = None
        # Workers start (fork) here, before the prefetch threads do: a fork copies no threads.
        batches = iter(self.loader)
        if self.prefetch:
            order, ends = self.upcoming(start)
            self.prefetcher = self.dataset.prefetcher(  # type: ignore[attr-defined]
                order, threads=self.prefetch_threads
            ).start()
        try:
            for n, batch in enumerate(batches):
                self._position = min(self._position + self._unit, end)
                if ends is not None and n < len(ends):
                    self.prefetcher.advance(int(ends[n]))
                yield batch
        finally:
            if self.prefetcher is not None:
                self.prefetcher.close()

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)
        self._position = self.sampler.resume_position

    def state_dict(self) -> dict[str, Any]:
        """The sampler's state with the position the consumer has actually reached."""
        return {**self.sampler.state_dict(), "position": self._position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)
        self._position = self.sampler.resume_position

"""ResumableLoader: a DataLoader whose state is the position the training loop has reached.

A sampler's own position runs ahead of training by the DataLoader's prefetch (prefetch_factor x
num_workers batches), so saving it would skip data on resume. This wrapper counts the batches it
has handed out and reports that as the position: exact for any worker count, before and after a
resume, because the batch sequence depends only on the sampler's seed, epoch and rank.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

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
        **dataloader_kwargs: Any,
    ) -> None:
        if batch_sampler is not None and sampler is not None:
            raise ValueError("give batch_sampler or sampler, not both")
        # Decode shards into the cache once here, not once per worker racing on the same shard.
        if prepare and num_workers > 0 and hasattr(dataset, "prepare"):
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

    def __iter__(self) -> Iterator[Any]:
        start = self.sampler.resume_position
        end = len(self.sampler)
        self._position = start
        for batch in self.loader:
            self._position = min(self._position + self._unit, end)
            yield batch

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

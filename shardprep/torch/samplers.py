"""Samplers: deterministic per-epoch order, split over ranks, resumable mid-epoch.

The order of an epoch depends only on (seed, epoch, rank, world_size), never on DataLoader workers:
the DataLoader draws indices in the main process and hands disjoint batches to its workers, and
returns results in sampler order. So "position in the epoch" is one integer, and resuming at it
gives the same next batch whatever the worker count. `ResumableLoader` (loader.py) records that
position as the training loop sees it, not as DataLoader prefetching has run ahead.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler


def _rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Explicit values win; otherwise torch.distributed's when initialized; otherwise 0 of 1."""
    if rank is None or world_size is None:
        if dist.is_available() and dist.is_initialized():
            rank = dist.get_rank() if rank is None else rank
            world_size = dist.get_world_size() if world_size is None else world_size
        else:
            rank = 0 if rank is None else rank
            world_size = 1 if world_size is None else world_size
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} out of range for world_size {world_size}")
    return rank, world_size


def _check_seed(seed: int) -> int:
    """numpy draws an epoch's order from (seed, epoch), both >= 0: refused here, by name, rather
    than as numpy's 'expected non-negative integer' at the first batch."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, not {seed}")
    return seed


def _epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch])


class _Resumable:
    """Epoch + position bookkeeping shared by both samplers (position counts items yielded)."""

    seed: int
    rank: int
    world_size: int

    def __init__(self) -> None:
        self.epoch = 0
        self._resume = 0  # where the next __iter__ starts (set by load_state_dict)
        self._position = 0

    def set_epoch(self, epoch: int) -> None:
        # Training loops call set_epoch(e) at the top of every epoch, including the one being
        # resumed: keep a loaded position when the epoch does not change.
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, not {epoch}")
        if epoch != self.epoch:
            self._resume = 0
            self._position = 0
        self.epoch = epoch

    @property
    def resume_position(self) -> int:
        return self._resume

    def _check_state(self, state: dict[str, Any]) -> None:
        if "plan" in state:  # its position counts packs, not rows or batches
            raise ValueError(
                "this is a PackedLoader state (its position counts packs of a packing plan): "
                "load it into a PackedLoader"
            )
        for key in ("seed", "world_size", "rank"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(
                    f"sampler state has {key}={state[key]!r}, this sampler {getattr(self, key)!r}"
                )

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "position": self._position,
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._check_state(state)
        self.epoch = int(state["epoch"])
        self._resume = self._position = int(state["position"])


class EpochSampler(_Resumable, Sampler[int]):
    """DistributedSampler semantics, resumable: each rank gets every world_size-th index of a
    per-epoch permutation; the tail is padded by wrapping around (or dropped with drop_last) so all
    ranks yield the same count.

    `shard_window=w` (with a ShardDataset, or anything with `shard_starts`) shuffles by shard
    instead, for builds larger than the reader's cache: the shards are permuted, taken w at a
    time, and the rows of each w shards permuted together, so a reader needs only w shards at once
    and the ranks of a node read the same w (one cached copy serves them all). Pick w so that w
    shards fit in half the cache limit."""

    def __init__(
        self,
        data: Sized | int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
        shard_window: int | None = None,
    ) -> None:
        _Resumable.__init__(self)
        self.n = data if isinstance(data, int) else len(data)
        self.shuffle = shuffle
        self.shard_window = shard_window
        self._starts: np.ndarray | None = None
        if shard_window is not None:
            starts = getattr(data, "shard_starts", None)
            if starts is None or shard_window < 1:
                raise ValueError(
                    "shard_window needs a dataset with shard_starts (a ShardDataset) and w >= 1"
                )
            self._starts = np.asarray(starts, dtype=np.int64)
        self.seed = _check_seed(seed)
        self.rank, self.world_size = _rank_world(rank, world_size)
        self.drop_last = drop_last
        if drop_last:
            self.num_samples = self.n // self.world_size
        else:
            self.num_samples = -(-self.n // self.world_size)

    def indices(self, epoch: int | None = None) -> np.ndarray:
        """This rank's indices for an epoch, in order."""
        epoch = self.epoch if epoch is None else epoch
        if not self.shuffle:
            order = np.arange(self.n)
        elif self._starts is not None and self.shard_window is not None:
            order = self._windowed(_epoch_rng(self.seed, epoch), self._starts, self.shard_window)
        else:
            order = _epoch_rng(self.seed, epoch).permutation(self.n)
        total = self.num_samples * self.world_size
        order = np.resize(order, total) if self.n else order  # wraps around to pad, or cuts
        return order[self.rank : total : self.world_size]

    @staticmethod
    def _windowed(rng: np.random.Generator, starts: np.ndarray, w: int) -> np.ndarray:
        shards = rng.permutation(len(starts) - 1)
        parts = []
        for g in range(0, len(shards), w):
            rows = np.concatenate(
                [np.arange(starts[k], starts[k + 1], dtype=np.int64) for k in shards[g : g + w]]
            )
            parts.append(rng.permutation(rows))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def __iter__(self) -> Iterator[int]:
        order = self.indices()
        start, self._resume = self._resume, 0
        for pos in range(start, len(order)):
            self._position = pos + 1
            yield int(order[pos])

    def __len__(self) -> int:
        return self.num_samples


class TokenBudgetBatchSampler(_Resumable, Sampler[list[int]]):
    """Batches of at most `max_tokens` tokens, rows of similar length together.

    Per epoch: shuffle (seeded by epoch), sort within windows of `window` rows by length, cut
    greedily into batches whose cost fits the budget, shuffle the batch order, deal batches to
    ranks round-robin (padding by wrap-around so every rank has as many, or dropping the tail with
    drop_last). Cost is rows x longest (rounded to pad_to_multiple_of) when `padded`, the sum of
    lengths for packing. A row longer than the budget gets a batch of its own.
    """

    def __init__(
        self,
        lengths: np.ndarray | list[int],
        max_tokens: int,
        *,
        padded: bool = True,
        pad_to_multiple_of: int = 1,
        max_rows: int | None = None,
        window: int = 8192,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
    ) -> None:
        _Resumable.__init__(self)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.max_tokens = int(max_tokens)
        self.padded = padded
        self.multiple = max(1, int(pad_to_multiple_of))
        self.max_rows = max_rows
        self.window = max(1, int(window))
        self.shuffle = shuffle
        self.seed = _check_seed(seed)
        self.rank, self.world_size = _rank_world(rank, world_size)
        self.drop_last = drop_last
        self._cache: tuple[int, list[np.ndarray]] | None = None

    def _all_batches(self, epoch: int) -> list[np.ndarray]:
        rng = _epoch_rng(self.seed, epoch)
        n = len(self.lengths)
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        batches: list[np.ndarray] = []
        for w in range(0, n, self.window):
            chunk = order[w : w + self.window]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches.extend(self._cut(chunk))
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def _cut(self, chunk: np.ndarray) -> list[np.ndarray]:
        # Rows come sorted ascending, so the newest row is the longest of the open batch.
        lens = self.lengths[chunk]
        if self.padded and self.multiple > 1:
            lens = -(-lens // self.multiple) * self.multiple
        out: list[np.ndarray] = []
        start, running = 0, 0
        for i, length in enumerate(lens.tolist()):
            count = i - start + 1
            cost = length * count if self.padded else running + length
            full = self.max_rows is not None and count > self.max_rows
            if count > 1 and (cost > self.max_tokens or full):
                out.append(chunk[start:i])
                start, running = i, 0
            running += length
        if start < len(chunk):
            out.append(chunk[start:])
        return out

    def batches(self, epoch: int | None = None) -> list[np.ndarray]:
        """This rank's batches for an epoch (computed once per epoch)."""
        epoch = self.epoch if epoch is None else epoch
        if self._cache is None or self._cache[0] != epoch:
            every = self._all_batches(epoch)
            per_rank = (
                len(every) // self.world_size
                if self.drop_last
                else -(-len(every) // self.world_size)
            )
            total = per_rank * self.world_size
            padded = [every[i % len(every)] for i in range(total)] if every else []
            self._cache = (epoch, padded[self.rank : total : self.world_size])
        return self._cache[1]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches()
        start, self._resume = self._resume, 0
        for pos in range(start, len(batches)):
            self._position = pos + 1
            yield batches[pos].tolist()

    def __len__(self) -> int:
        return len(self.batches())

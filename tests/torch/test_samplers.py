"""Epoch order, ranks, token budgets, exact resume (also across worker counts), worker processes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from shardprep.torch import (
    EpochSampler,
    PadCollate,
    ResumableLoader,
    ShardDataset,
    TokenBudgetBatchSampler,
)


@pytest.fixture(scope="module")
def ds(demo_shards: Path, cache_dir: str) -> ShardDataset:
    return ShardDataset(str(demo_shards), cache_dir=cache_dir).prepare()


def test_epochs_are_distinct_deterministic_permutations() -> None:
    s = EpochSampler(101, seed=3)
    first = list(s)
    assert sorted(first) == list(range(101))
    assert list(s) == first  # same epoch, same order
    s.set_epoch(1)
    second = list(s)
    assert sorted(second) == list(range(101)) and second != first
    assert list(EpochSampler(101, seed=3)) == first  # a fresh sampler agrees
    assert list(EpochSampler(101, shuffle=False)) == list(range(101))
    # Refused where given, by name (was numpy's 'expected non-negative integer' at the first batch).
    with pytest.raises(ValueError, match="seed must be >= 0, not -1"):
        EpochSampler(101, seed=-1)
    with pytest.raises(ValueError, match="seed must be >= 0, not -2"):
        TokenBudgetBatchSampler([5] * 10, 64, seed=-2)
    with pytest.raises(ValueError, match="epoch must be >= 0, not -1"):
        s.set_epoch(-1)


@pytest.mark.parametrize("world", [1, 3, 4])
def test_ranks_are_disjoint_and_cover(world: int) -> None:
    n = 103
    per_rank = [
        list(EpochSampler(n, seed=1, rank=r, world_size=world, drop_last=True))
        for r in range(world)
    ]
    seen = [i for part in per_rank for i in part]
    assert len(seen) == len(set(seen)) == (n // world) * world
    padded = [list(EpochSampler(n, seed=1, rank=r, world_size=world)) for r in range(world)]
    assert {len(p) for p in padded} == {-(-n // world)}
    assert set().union(*map(set, padded)) == set(range(n))
    # Without drop_last only the wrap-around padding repeats: fewer than world_size extra indices.
    assert sum(map(len, padded)) - n < world


def test_token_budget_batches(ds: ShardDataset) -> None:
    lengths = ds.lengths
    budget = 8192
    s = TokenBudgetBatchSampler(lengths, budget, pad_to_multiple_of=64, seed=0)
    batches = list(s)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(ds)))
    for b in batches:
        cost = len(b) * -(-int(lengths[b].max()) // 64) * 64
        assert cost <= budget or len(b) == 1
    # Length grouping: far less padding than batching in random order.
    waste = sum(len(b) * lengths[b].max() - lengths[b].sum() for b in batches)
    assert waste < 0.25 * lengths.sum()
    s.set_epoch(1)
    assert [list(b) for b in s] != [list(b) for b in batches]

    packed = TokenBudgetBatchSampler(lengths, budget, padded=False, seed=0)
    assert all(lengths[b].sum() <= budget or len(b) == 1 for b in packed)

    ranks = [
        list(TokenBudgetBatchSampler(lengths, budget, seed=0, rank=r, world_size=2, drop_last=True))
        for r in range(2)
    ]
    assert len(ranks[0]) == len(ranks[1])
    assert not {i for b in ranks[0] for i in b} & {i for b in ranks[1] for i in b}


def _tokens(batch: dict[str, torch.Tensor]) -> list[list[int]]:
    return [
        row[: int(n)].tolist() for row, n in zip(batch["input_ids"], batch["lengths"], strict=True)
    ]


@pytest.mark.parametrize(("workers_before", "workers_after"), [(0, 0), (2, 0), (0, 2)])
@pytest.mark.parametrize("kind", ["samples", "budget"])
def test_resume_continues_with_the_next_batch(
    ds: ShardDataset, kind: str, workers_before: int, workers_after: int
) -> None:
    collate = PadCollate(ds.pad_id)

    def loader(workers: int) -> ResumableLoader:
        if kind == "budget":
            bs = TokenBudgetBatchSampler(ds.lengths, 6000, seed=7)
            return ResumableLoader(ds, batch_sampler=bs, collate_fn=collate, num_workers=workers)
        return ResumableLoader(
            ds,
            sampler=EpochSampler(ds, seed=7),
            batch_size=16,
            collate_fn=collate,
            num_workers=workers,
        )

    reference = loader(0)
    reference.set_epoch(2)
    expected = [b["index"].tolist() for b in reference]

    k = 5
    first = loader(workers_before)
    first.set_epoch(2)
    it = iter(first)
    for step in range(k):
        assert next(it)["index"].tolist() == expected[step]
    state = first.state_dict()  # workers have prefetched past k; the state must not have
    assert state["position"] == (k if kind == "budget" else k * 16)
    del it

    resumed = loader(workers_after)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # the loop's usual call at the top of the epoch keeps the position
    rest = [b["index"].tolist() for b in resumed]
    assert rest == expected[k:]
    assert resumed.state_dict()["position"] == len(resumed.sampler)
    resumed.set_epoch(3)
    assert resumed.state_dict()["position"] == 0


def test_dataloader_workers_read_every_row_once(ds: ShardDataset, demo_shards: Path) -> None:
    loader = ResumableLoader(
        ds,
        sampler=EpochSampler(ds, seed=0),
        batch_size=32,
        collate_fn=PadCollate(ds.pad_id),
        num_workers=2,
    )
    seen: dict[int, list[int]] = {}
    for batch in loader:
        for i, toks in zip(batch["index"].tolist(), _tokens(batch), strict=True):
            assert i not in seen
            seen[i] = toks
    assert sorted(seen) == list(range(len(ds)))
    written = [
        r
        for p in sorted((demo_shards).glob("data-*/train-*.parquet"))
        for r in pq.read_table(p, columns=["input_ids"]).column(0).to_pylist()
    ]
    assert all(seen[i] == written[i] for i in range(len(ds)))


def test_workers_build_the_cache_themselves(demo_shards: Path, tmp_path: Path) -> None:
    # No prepare(): two workers race to decode the same shards; the atomic rename settles it.
    fresh = ShardDataset(str(demo_shards), cache_dir=str(tmp_path / "c"))
    loader = torch.utils.data.DataLoader(
        fresh, batch_size=8, collate_fn=PadCollate(0), num_workers=2
    )
    total = sum(int(b["lengths"].sum()) for b in loader)
    assert total == int(np.sum(fresh.lengths))


def test_shard_window_shuffles_within_windows_of_shards(tmp_path) -> None:
    from shardprep.torch import ShardDataset

    from .conftest import write_build
    from .test_remote import sft_tables

    ds = ShardDataset(
        str(write_build(tmp_path / "b", "sft/1", sft_tables(10, 7))), cache_dir=str(tmp_path / "c")
    )
    s = EpochSampler(ds, seed=5, shard_window=3)
    first = s.indices(0)
    assert sorted(first.tolist()) == list(range(len(ds)))  # every row once
    assert first.tolist() == EpochSampler(ds, seed=5, shard_window=3).indices(0).tolist()
    assert first.tolist() != s.indices(1).tolist()  # another order each epoch
    # Consecutive stretches of 3 shards' rows (the last window has 1 shard) hold 3 shards each.
    shards = ds.shard_of(first)
    for start, stop in ((0, 21), (21, 42), (42, 63), (63, 70)):
        assert len(set(shards[start:stop].tolist())) == (3 if stop - start == 21 else 1)
    # Ranks split the same windows: together they read each row once.
    ranks = [EpochSampler(ds, seed=5, shard_window=3, rank=r, world_size=2) for r in (0, 1)]
    both = np.concatenate([r.indices(0) for r in ranks])
    assert sorted(both.tolist()) == list(range(len(ds)))
    with pytest.raises(ValueError, match="shard_starts"):
        EpochSampler(len(ds), shard_window=3)


def test_a_packed_loaders_state_is_refused_by_the_samplers(ds: ShardDataset) -> None:
    """A PackedLoader's position counts packs of its plan; a sampler's counts rows or batches. It
    has no rank/world_size keys, so the samplers took it silently and resumed at the wrong row."""
    from shardprep.torch import PackedLoader

    packed = PackedLoader(ds, seq_len=1024, batch_size=2)
    steps = iter(packed)
    for _ in range(3):
        next(steps)
    state = packed.state_dict()
    for target in (
        ResumableLoader(ds, batch_size=4),
        EpochSampler(len(ds)),
        TokenBudgetBatchSampler(ds.lengths, 4096),
    ):
        with pytest.raises(ValueError, match="PackedLoader state"):
            target.load_state_dict(state)

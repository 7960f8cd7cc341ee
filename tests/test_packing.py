"""The packing plan (shardprep/packing.py): exact best-fit decreasing, its accounting and its order."""

from __future__ import annotations

import numpy as np
import pytest

from shardprep.packing import NEVER_TRAINED, PackingPlan, best_fit_decreasing, first_trained


def one_by_one_bfd(lengths: list[int], capacity: int) -> list[list[int]]:
    """Textbook best-fit decreasing, one row at a time: the least room that fits, ties to the bin
    that reached that room first (as TRL's deque-per-room does)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    rooms: list[int] = []
    since: list[int] = []
    for t, i in enumerate(order):
        fits = [b for b, r in enumerate(rooms) if r >= lengths[i]]
        if fits:
            b = min(fits, key=lambda b: (rooms[b], since[b]))
            bins[b].append(i)
            rooms[b] -= lengths[i]
            since[b] = t
        else:
            bins.append([i])
            rooms.append(capacity - lengths[i])
            since.append(t)
    return bins


def test_counts_based_bfd_is_one_by_one_bfd_exactly() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        capacity = int(rng.integers(1, 70))
        lengths = rng.integers(1, capacity + 1, int(rng.integers(0, 90)))
        rows, offsets = best_fit_decreasing(lengths, capacity)
        got = [rows[offsets[b] : offsets[b + 1]].tolist() for b in range(len(offsets) - 1)]
        assert got == one_by_one_bfd(lengths.tolist(), capacity), (capacity, lengths.tolist())


def test_zero_length_rows_are_placed_and_out_of_range_refused() -> None:
    rows, offsets = best_fit_decreasing(np.array([0, 3, 0, 2]), 4)
    assert sorted(rows.tolist()) == [0, 1, 2, 3] and len(offsets) == 3
    rows, offsets = best_fit_decreasing(np.array([0, 0]), 4)
    assert rows.tolist() == [0, 1] and offsets.tolist() == [0, 2]
    with pytest.raises(ValueError, match="0..4"):
        best_fit_decreasing(np.array([5]), 4)


def test_plan_accounting_truncation_and_bound() -> None:
    lengths = np.array([10, 3, 7, 9, 1, 2, 15, 4])
    plan = PackingPlan.build(lengths, 10)  # capacity 9: the last position stays free
    assert plan.capacity == 9
    assert sorted(plan.rows.tolist()) == list(range(len(lengths)))
    assert plan.rows_over_length == 2  # 10 and 15
    assert plan.positions_truncated == (10 - 9) + (15 - 9)
    assert plan.positions == int(np.minimum(lengths, 9).sum())
    assert (plan.pack_positions <= 9).all() and int(plan.pack_positions.sum()) == plan.positions
    assert plan.packs >= plan.packs_lower_bound == -(-plan.positions // 9)
    assert plan.efficiency == pytest.approx(plan.positions / (plan.packs * 10))
    summary = plan.summary()
    assert {"seq_len", "packs", "efficiency", "rows_over_length"} <= set(summary)
    with pytest.raises(ValueError, match="at least 2"):
        PackingPlan.build(lengths, 1)


def test_plan_is_deterministic_and_any_seq_len_comes_from_one_length_column() -> None:
    rng = np.random.default_rng(1)
    lengths = np.clip(rng.lognormal(5.5, 0.9, 20_000).astype(np.int64), 1, 9000)
    plans = {s: PackingPlan.build(lengths, s) for s in (2048, 4096, 8192)}
    for s, plan in plans.items():
        again = PackingPlan.build(lengths.copy(), s)
        assert again.digest == plan.digest
        assert np.array_equal(again.rows, plan.rows)
        assert plan.efficiency >= 0.995, (s, plan.summary())
        # Packs visited in a seeded shuffle: no drift from long rows to short ones.
        assert abs(plan.position_bias(seed=0)) < 0.1
        assert not np.array_equal(plan.order(0, 0), plan.order(0, 1))
        assert np.array_equal(plan.order(3, 2), plan.order(3, 2))
    assert len({p.digest for p in plans.values()}) == 3


def test_never_more_packs_than_trls_bfd() -> None:
    """TRL's own `bfd` (trl.pack_dataset) on the same lengths and capacity: never fewer packs."""
    datasets = pytest.importorskip("datasets")
    trl_utils = pytest.importorskip("trl.data_utils")
    rng = np.random.default_rng(2)
    lengths = np.clip(rng.lognormal(5.0, 1.0, 3000).astype(np.int64), 1, 1023)
    capacity = 1023
    ds = datasets.Dataset.from_dict({"input_ids": [[1] * int(n) for n in lengths]})
    trl_packs = len(trl_utils.pack_dataset(ds, capacity, strategy="bfd"))
    plan = PackingPlan.build(lengths, capacity + 1)
    assert plan.packs <= trl_packs


def test_a_capacity_far_above_the_rows_costs_nothing_and_is_still_exact() -> None:
    """Work and memory grow with the longest row, not the capacity: a seq_len of 10**12 (a typo, or
    "everything in one pack") used to allocate per-room arrays of its size (MemoryError, or a
    machine swapping)."""
    rng = np.random.default_rng(1)
    for _ in range(100):
        capacity = int(rng.integers(1, 70))
        lengths = rng.integers(1, capacity + 1, int(rng.integers(0, 90)))
        # Rooms far above every length: the same bins as the textbook algorithm.
        big = capacity + 10**12
        rows, offsets = best_fit_decreasing(lengths, big)
        got = [rows[offsets[b] : offsets[b + 1]].tolist() for b in range(len(offsets) - 1)]
        assert got == one_by_one_bfd(lengths.tolist(), big)
    lengths = rng.integers(0, 3000, 5000)
    plan = PackingPlan.build(lengths, 10**12)
    assert plan.packs == 1 and plan.rows_over_length == 0
    assert plan.positions == int(lengths.sum()) and plan.efficiency < 1e-5
    assert sorted(plan.pack(0).tolist()) == list(range(len(lengths)))


def test_first_trained_says_whether_the_first_n_weights_train_anything() -> None:
    rows = [[0, 0, 1], [1, 0, 0], [0, 0, 0], [], [0, 0.5]]
    values = np.array([w for r in rows for w in r], dtype=np.float32)
    offsets = np.cumsum([0, *(len(r) for r in rows)])
    first = first_trained(values, offsets)
    assert first.tolist() == [2, 0, NEVER_TRAINED, NEVER_TRAINED, 1]
    for n in range(5):
        expected = [any(w > 0 for w in r[:n]) for r in rows]
        assert (first < n).tolist() == expected, n


def test_a_truncated_row_with_nothing_trained_left_keeps_no_position() -> None:
    """Rows of 10 positions at seq_len 6 (capacity 5): one trained early keeps 5, one trained only
    past position 5 keeps none and is counted; it is asked about only because it is truncated."""
    lengths = np.array([10, 10, 3, 4])
    asked: list[list[int]] = []

    def prefix(rows: np.ndarray, n: int) -> np.ndarray:
        asked.append(rows.tolist())
        assert n == 5
        return np.array([r == 0 for r in rows.tolist()])

    plan = PackingPlan.build(lengths, 6, prefix)
    assert asked == [[0, 1]]
    assert plan.kept.tolist() == [5, 0, 3, 4]
    assert plan.rows_over_length == 2 and plan.rows_trained_away == 1
    assert plan.summary()["rows_trained_away"] == 1
    assert all(plan.pack_positions > 0)  # no pack of nothing
    assert sorted(plan.rows.tolist()) == [0, 1, 2, 3]  # the row is still in the plan, with nothing
    same = PackingPlan.build(lengths, 6)  # without weights: every truncated row keeps a position
    assert same.kept.tolist() == [5, 5, 3, 4] and same.rows_trained_away == 0


def test_first_trained_on_random_rows() -> None:
    rng = np.random.default_rng(0)
    for _ in range(500):
        rows = [
            list((rng.random(int(rng.integers(0, 8))) < 0.2).astype(float))
            for _ in range(int(rng.integers(0, 6)))
        ]
        values = np.array([w for r in rows for w in r], dtype=np.float32)
        first = first_trained(values, np.cumsum([0, *(len(r) for r in rows)]))
        for n in range(10):
            assert (first < n).tolist() == [any(w > 0 for w in r[:n]) for r in rows]

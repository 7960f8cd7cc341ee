"""The packing plan: a build's rows grouped into packs of at most `seq_len` positions, index-only.

One plan serves `prep show --pack` (what a user reads before training) and
`shardprep.torch.PackedLoader` (what a trainer consumes), so the step count and the waste shown are
the ones trained. It reads only the `length` column (a row of n positions: tinker's shifted
`input_ids` / `target_ids` / `weights`, n + 1 tokens); no token is rewritten, and any number of
`seq_len`s can be planned from one build.

Capacity. A pack holds rows of at most `seq_len - 1` positions in all, so its last position is
always padding: a Hugging Face model's own label shift (position t is scored against `labels[t + 1]`)
then never needs a position past the pack, and a row built with `max_length: seq_len` (n <=
seq_len - 1) always fits. Efficiency is row positions / (packs x seq_len); the bound printed beside
it is ceil(row positions / (seq_len - 1)) packs.

Rows longer than the capacity (`rows_over_length`) are truncated to it, keeping their first
positions (the build's own `overlong: truncate` rule, applied again at the pack size); each then
fills a pack alone. The positions cut are counted (`positions_truncated`). Rows of length 0 join
the last pack (they add nothing). A truncated row whose trained positions all lie past the cut (a
long prompt, then the answer) would fill a pack that trains nothing, and a step of such packs gives
a loss of 0/0 (NaN in Hugging Face's): given the rows' weights (`trained_prefix`, by
`first_trained`), such a row keeps
no position, joins the last pack like an empty row, and is counted (`rows_trained_away`).

Packing is best-fit decreasing over the whole split, exactly: rows sorted by length (longest
first, ties by row index), each placed in the open pack with the least room that still fits it.
Because lengths are small integers it runs on counts, not rows: open packs are kept in buckets by
remaining room, and all rows of one length are placed bucket by bucket (a pack with room r takes
r // n rows of length n in a row, as one-by-one best fit would), so the Python work grows with the
number of distinct lengths and buckets, not rows (10 M rows: about a second; bench/bench_packing.py).

Order. The plan is fixed; each epoch visits its packs in a permutation drawn from (seed, epoch).
Best-fit decreasing makes its late packs of many short rows; shuffling spreads them over the
epoch. `position_bias` is the correlation between a pack's place in the epoch and its mean row
length (near 0: no drift from long to short rows through an epoch).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, insort
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

NEVER_TRAINED = np.iinfo(np.int64).max


def first_trained(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per row of a list column (`values` cut by `offsets`, weights): the index of its first
    value above 0, or NEVER_TRAINED when it has none. A row keeping its first n positions still
    trains something exactly when this is below n."""
    offsets = np.asarray(offsets, dtype=np.int64)
    starts, ends = offsets[:-1], offsets[1:]
    trained = np.flatnonzero(np.asarray(values) > 0)
    at = np.append(trained, NEVER_TRAINED)[np.searchsorted(trained, starts)]  # first at or after
    return np.where(at < ends, at - starts, NEVER_TRAINED)


def epoch_order(packs: int, seed: int, epoch: int) -> np.ndarray:
    """The order an epoch visits `packs` packs: depends on (seed, epoch) only."""
    if seed < 0 or epoch < 0:
        raise ValueError(
            f"a packing order needs seed and epoch >= 0, not seed={seed}, epoch={epoch}"
        )
    return np.random.default_rng([seed, epoch]).permutation(packs)


def best_fit_decreasing(lengths: np.ndarray, capacity: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows grouped into bins of at most `capacity` by exact best-fit decreasing.

    `lengths` must lie in 0..capacity. Returns (rows, offsets): bin b holds
    `rows[offsets[b]:offsets[b + 1]]`, in the order placed (longest first). Bins are numbered in
    the order they were opened; among bins with equal room the earliest to reach that room is used.
    """
    lengths = np.asarray(lengths)
    n = len(lengths)
    if capacity < 1:
        raise ValueError(f"capacity must be at least 1, not {capacity}")
    if n and (int(lengths.min()) < 0 or int(lengths.max()) > capacity):
        raise ValueError(f"lengths must lie in 0..{capacity}")
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64)
    # Rows longest first, ties by index: a stable sort of (capacity - length), radix-sorted when
    # it fits 16 bits.
    # Row indices and bin ids in int32 while they fit: half the memory (10 M rows, ~250 MB peak).
    index = np.int32 if n < 1 << 31 else np.int64
    key: np.ndarray
    if capacity < 1 << 16:
        key = lengths.astype(np.uint16)
        np.subtract(np.uint16(capacity), key, out=key)
    else:
        key = capacity - lengths.astype(np.int64)
    order = np.argsort(key, kind="stable").astype(index)
    del key
    # Sized by the longest row, not the capacity: a seq_len far above every row costs nothing.
    counts = np.bincount(lengths)

    buckets: dict[int, list[np.ndarray]] = {}  # room -> bin-id chunks of the open bins
    rooms: list[int] = []  # the keys of `buckets`, ascending
    placed: list[np.ndarray] = []  # bin id per row, in `order`
    opened = 0

    def put(room: int, bins: np.ndarray) -> None:
        if len(bins):
            if room not in buckets:
                buckets[room] = []
                insort(rooms, room)
            buckets[room].append(bins)

    for size in range(len(counts) - 1, 0, -1):
        left = int(counts[size])
        if not left:
            continue
        for room in rooms[bisect_left(rooms, size) :]:
            chunks = buckets[room]
            bins = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
            each = room // size  # rows of this size a bin with this room takes, one after another
            if len(bins) * each <= left:
                placed.append(np.repeat(bins, each))
                del buckets[room]
                rooms.pop(bisect_left(rooms, room))
                put(room - each * size, bins)
                left -= len(bins) * each
                if not left:
                    break
                continue
            full, rest = divmod(left, each)
            placed.append(np.repeat(bins[:full], each))
            moved = full
            if rest:
                placed.append(np.full(rest, bins[full], dtype=bins.dtype))
                moved += 1
            buckets[room] = [bins[moved:]]
            put(room - each * size, bins[:full])
            if rest:
                put(room - rest * size, bins[full : full + 1])
            left = 0
            break
        if left:
            each = capacity // size
            new, rest = divmod(left, each)
            ids = np.arange(opened, opened + new + (1 if rest else 0), dtype=index)
            opened += len(ids)
            per_bin = np.full(len(ids), each, dtype=np.int64)
            if rest:
                per_bin[-1] = rest
            placed.append(np.repeat(ids, per_bin))
            put(capacity - each * size, ids[:new])
            if rest:
                put(capacity - rest * size, ids[new:])
    zero = int(counts[0])
    if zero:
        if opened == 0:
            opened = 1
        placed.append(np.full(zero, opened - 1, dtype=index))
    bin_of = np.concatenate(placed)
    del placed
    offsets = np.zeros(opened + 1, dtype=np.int64)
    np.cumsum(np.bincount(bin_of, minlength=opened), out=offsets[1:])
    rows = order[np.argsort(bin_of, kind="stable")]
    return rows, offsets


@dataclass(frozen=True)
class PackingPlan:
    """A split's rows in packs of `seq_len` positions (see the module docstring for the rules).

    `rows[offsets[p]:offsets[p + 1]]` are the rows of pack p, each using `kept[row]` positions.
    """

    seq_len: int
    rows: np.ndarray  # row indices (int32 below 2**31 rows), pack by pack
    offsets: np.ndarray  # int64, packs + 1
    kept: np.ndarray  # int32 positions each row contributes (its length, truncated to capacity)
    lengths_total: int  # positions of the rows before truncation
    rows_over_length: int  # rows longer than the capacity (truncated to it)
    rows_trained_away: int = 0  # truncated rows left with no trained position (keep none)

    @classmethod
    def build(
        cls,
        lengths: np.ndarray,
        seq_len: int,
        trained_prefix: Callable[[np.ndarray, int], np.ndarray] | None = None,
    ) -> PackingPlan:
        """`trained_prefix(rows, n)`: for each of those rows (all longer than n positions),
        whether any of its first n positions is trained; asked only when some row is over the
        capacity. Without it, every truncated row is taken to keep a trained position."""
        seq_len = int(seq_len)
        if seq_len < 2:
            raise ValueError(
                f"seq_len must be at least 2 (one position is kept free), not {seq_len}"
            )
        lengths = np.asarray(lengths)
        if len(lengths) and int(lengths.min()) < 0:
            raise ValueError("row lengths cannot be negative")
        kept = np.empty(len(lengths), dtype=np.int32)
        # A row is at most int32 long, so a larger capacity truncates nothing (and fits int64).
        np.minimum(lengths, min(seq_len - 1, 2**31 - 1), out=kept, casting="unsafe")
        over = np.flatnonzero(lengths > seq_len - 1)
        away = 0
        if len(over) and trained_prefix is not None:
            lost = over[~np.asarray(trained_prefix(over, seq_len - 1), dtype=bool)]
            kept[lost] = 0
            away = len(lost)
        rows, offsets = best_fit_decreasing(kept, seq_len - 1)
        return cls(
            seq_len=seq_len,
            rows=rows,
            offsets=offsets,
            kept=kept,
            lengths_total=int(lengths.sum(dtype=np.int64)),
            rows_over_length=len(over),
            rows_trained_away=away,
        )

    @property
    def capacity(self) -> int:
        return self.seq_len - 1

    @property
    def packs(self) -> int:
        return len(self.offsets) - 1

    @property
    def row_count(self) -> int:
        return len(self.kept)

    @cached_property
    def pack_positions(self) -> np.ndarray:
        """Row positions in each pack."""
        if not self.packs:
            return np.zeros(0, dtype=np.int64)
        return np.add.reduceat(self.kept[self.rows], self.offsets[:-1], dtype=np.int64)

    @property
    def positions(self) -> int:
        return int(self.kept.sum(dtype=np.int64))

    @property
    def positions_truncated(self) -> int:
        return self.lengths_total - self.positions

    @property
    def efficiency(self) -> float:
        """Row positions / (packs x seq_len)."""
        return self.positions / (self.packs * self.seq_len) if self.packs else 1.0

    @property
    def packs_lower_bound(self) -> int:
        """No plan of this capacity has fewer packs: ceil(positions / (seq_len - 1))."""
        return -(-self.positions // self.capacity)

    @cached_property
    def digest(self) -> str:
        """Identifies the plan (seq_len and every pack's rows): a loader state names it."""
        h = hashlib.sha256(f"{self.seq_len}:{self.packs}:".encode())
        h.update(np.ascontiguousarray(self.offsets, dtype="<i8").data)
        h.update(
            np.ascontiguousarray(
                self.rows, dtype="<i8" if self.rows.dtype.itemsize == 8 else "<i4"
            ).data
        )
        return h.hexdigest()[:16]

    def pack(self, p: int) -> np.ndarray:
        return self.rows[self.offsets[p] : self.offsets[p + 1]]

    def order(self, seed: int, epoch: int) -> np.ndarray:
        return epoch_order(self.packs, seed, epoch)

    def steps(self, seed: int, epoch: int, global_batch: int, start: int = 0) -> np.ndarray:
        """[steps, global_batch] pack ids of an epoch's global stream from position `start`.

        The stream is the epoch's order; the last step wraps around to its first packs, so every
        step is whole (every rank gets as many packs).
        """
        left = max(self.packs - start, 0)
        steps = -(-left // global_batch)
        at = start + np.arange(steps * global_batch, dtype=np.int64).reshape(steps, global_batch)
        order = self.order(seed, epoch)
        return order[at % len(order)] if len(order) else at

    def balance(
        self, seed: int, epoch: int, batch_size: int, world_size: int, start: int = 0
    ) -> float:
        """Mean over global steps of (max - min) / max positions per rank (0: ranks equal)."""
        grid = self.steps(seed, epoch, batch_size * world_size, start)
        if not len(grid):
            return 0.0
        per_rank = self.pack_positions[grid].reshape(len(grid), world_size, batch_size).sum(axis=2)
        top = per_rank.max(axis=1)
        return float(np.mean((top - per_rank.min(axis=1)) / np.maximum(top, 1)))

    def position_bias(self, seed: int = 0, epoch: int = 0) -> float:
        """Correlation of a pack's place in the epoch with its mean row length (0: no drift)."""
        if self.packs < 3:
            return 0.0
        per_pack = np.diff(self.offsets)
        mean_len = self.pack_positions / np.maximum(per_pack, 1)
        visited = mean_len[self.order(seed, epoch)]
        if float(visited.std()) == 0.0:
            return 0.0
        return float(np.corrcoef(np.arange(self.packs), visited)[0, 1])

    def summary(self, seed: int = 0) -> dict[str, int | float | str]:
        """What `prep show --pack` reports (JSON-ready); `plan` is the digest a loader state names."""
        return {
            "seq_len": self.seq_len,
            "packs": self.packs,
            "efficiency": round(self.efficiency, 6),
            "rows_over_length": self.rows_over_length,
            "rows_trained_away": self.rows_trained_away,
            "rows": self.row_count,
            "positions": self.positions,
            "positions_truncated": self.positions_truncated,
            "packs_lower_bound": self.packs_lower_bound,
            "position_bias": round(self.position_bias(seed), 4),
            "plan": self.digest,
        }

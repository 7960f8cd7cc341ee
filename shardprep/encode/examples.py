"""Rendered (tokens, weights) -> training example arrays: truncate, then shift, as tinker's datum does."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

# Stable reasons recorded in manifest stats.dropped.
DROP_OVERLONG = "overlong"
DROP_NO_TRAINED = "no_trained_tokens"
DROP_TOO_SHORT = "too_short"
# Nothing trained is left because truncation at max_length cut every trained token away (the
# row did train some): a max_length problem, not a train_on one.
DROP_TRUNCATED_AWAY = "truncated_away"


@dataclass(frozen=True)
class Example:
    input_ids: np.ndarray  # int32, tokens[:-1]
    target_ids: np.ndarray  # int32, tokens[1:]
    weights: np.ndarray  # float32, weight of each target token
    truncated: bool


@dataclass(frozen=True)
class Dropped:
    """An example that is not written, with its stable reason (a key of manifest stats.dropped)."""

    reason: str


def make_example(
    tokens: np.ndarray,
    weights: np.ndarray,
    *,
    max_length: int | None,
    overlong: Literal["truncate", "drop"] = "truncate",
    reduction: Literal["none", "mean"] = "none",
) -> Example | Dropped:
    """Return the example, or why it is dropped.

    Truncation applies to the unshifted sequence (so an example has at most max_length-1 inputs)
    and the target at i carries the weight of token i+1: exactly `datum_from_model_input_weights`.
    """
    truncated = False
    weights_in = weights
    if max_length is not None and len(tokens) > max_length:
        if overlong == "drop":
            return Dropped(DROP_OVERLONG)
        tokens, weights, truncated = tokens[:max_length], weights[:max_length], True
    if len(tokens) < 2:
        return Dropped(DROP_TOO_SHORT)
    target_w = np.asarray(weights[1:], dtype=np.float32)
    total = float(target_w.sum(dtype=np.float64))
    if total <= 0.0:
        if truncated and float(np.asarray(weights_in[1:], dtype=np.float64).sum()) > 0.0:
            return Dropped(DROP_TRUNCATED_AWAY)
        return Dropped(DROP_NO_TRAINED)
    if reduction == "mean":
        target_w = (target_w / np.float32(total)).astype(np.float32)
    ids = np.asarray(tokens, dtype=np.int32)
    return Example(input_ids=ids[:-1], target_ids=ids[1:], weights=target_w, truncated=truncated)


@dataclass(frozen=True)
class ExampleBatch:
    """`make_example` over a whole rendered batch, in flat buffers (no Python object per row).

    Kept example j came from batch row `rows[j]`; its inputs are
    `input_ids[offsets[j]:offsets[j + 1]]`, and targets and weights are cut the same way.
    """

    rows: np.ndarray  # int64, batch row of each kept example, ascending
    input_ids: np.ndarray  # int32
    target_ids: np.ndarray  # int32
    weights: np.ndarray  # float32
    offsets: np.ndarray  # int64, kept + 1
    truncated: np.ndarray  # bool per kept example
    trained: np.ndarray  # int64, nonzero weights per kept example
    dropped: dict[int, str]  # batch row -> drop reason

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def example(self, j: int) -> Example:
        a, b = self.offsets[j], self.offsets[j + 1]
        return Example(
            self.input_ids[a:b], self.target_ids[a:b], self.weights[a:b], bool(self.truncated[j])
        )

    def take(self, keep: np.ndarray) -> ExampleBatch:
        """The examples where `keep` (bool per kept example) is true, in order."""
        if keep.all():
            return self
        per_token = np.repeat(keep, self.lengths)
        offsets = np.zeros(int(keep.sum()) + 1, dtype=np.int64)
        np.cumsum(self.lengths[keep], out=offsets[1:])
        return ExampleBatch(
            self.rows[keep],
            self.input_ids[per_token],
            self.target_ids[per_token],
            self.weights[per_token],
            offsets,
            self.truncated[keep],
            self.trained[keep],
            {},
        )


def make_examples(
    tokens: np.ndarray,
    weights: np.ndarray,
    offsets: np.ndarray,
    *,
    skip: Iterable[int] = (),
    max_length: int | None,
    overlong: Literal["truncate", "drop"] = "truncate",
    reduction: Literal["none", "mean"] = "none",
) -> ExampleBatch:
    """`make_example` for every row i = tokens[offsets[i]:offsets[i+1]] not in `skip`, at once.

    The same rules in the same order (overlong, too short, nothing trained: cut away or never)
    and the same float32 arithmetic, so each kept example equals `make_example`'s. A row's
    trained total is the sum of its 0/1 target weights, exact in float64 whatever the order.
    """
    n = len(offsets) - 1
    start = np.asarray(offsets[:-1], dtype=np.int64)
    length = np.diff(np.asarray(offsets, dtype=np.int64))
    live = np.ones(n, dtype=bool)
    dropped: dict[int, str] = {}
    for i in skip:
        live[i] = False
    eff: np.ndarray = length
    truncated = np.zeros(n, dtype=bool)
    if max_length is not None:
        over = live & (length > max_length)
        if overlong == "drop":
            dropped.update(dict.fromkeys(np.flatnonzero(over).tolist(), DROP_OVERLONG))
            live &= ~over
        else:
            eff = np.minimum(length, max_length)
            truncated = over
    short = live & (eff < 2)
    dropped.update(dict.fromkeys(np.flatnonzero(short).tolist(), DROP_TOO_SHORT))
    live &= ~short
    rows = np.flatnonzero(live)
    m: np.ndarray = (eff[rows] - 1).astype(np.int64)  # targets per candidate example
    seg = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(m, out=seg[1:])
    idx = np.repeat(start[rows] - seg[:-1], m) + np.arange(seg[-1], dtype=np.int64)
    target_w = np.asarray(weights, dtype=np.float32)[idx + 1]
    starts = seg[:-1]
    if len(rows):
        total = np.add.reduceat(target_w.astype(np.float64), starts)
        trained = np.add.reduceat((target_w != 0).astype(np.int64), starts)
    else:
        total = np.zeros(0, dtype=np.float64)
        trained = np.zeros(0, dtype=np.int64)
    none = total <= 0.0
    w_all = np.asarray(weights)
    for r in rows[none].tolist():
        # A cut row that trained something before the cut lost it to max_length (rare: a loop).
        lost = truncated[r] and bool(np.any(w_all[start[r] + 1 : start[r] + length[r]] != 0))
        dropped[r] = DROP_TRUNCATED_AWAY if lost else DROP_NO_TRAINED
    ids = np.asarray(tokens, dtype=np.int32)
    batch = ExampleBatch(
        rows, ids[idx], ids[idx + 1], target_w, seg, truncated[rows], trained, dropped
    )
    if none.any():
        batch = dataclasses.replace(batch.take(~none), dropped=dropped)
        total = total[~none]
    if reduction == "mean" and len(batch):
        per = np.repeat(total.astype(np.float32), batch.lengths)
        batch = ExampleBatch(
            batch.rows,
            batch.input_ids,
            batch.target_ids,
            (batch.weights / per).astype(np.float32),
            batch.offsets,
            batch.truncated,
            batch.trained,
            dropped,
        )
    return batch

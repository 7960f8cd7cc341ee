from __future__ import annotations

import numpy as np
import pytest

from shardprep.encode.examples import (
    DROP_NO_TRAINED,
    DROP_OVERLONG,
    DROP_TOO_SHORT,
    DROP_TRUNCATED_AWAY,
    Dropped,
    Example,
    make_example,
    make_examples,
)


def _ex(n: int, trained_from: int, **kw: object) -> Example | Dropped:
    tokens = np.arange(100, 100 + n, dtype=np.int64)
    weights = np.array([0.0] * trained_from + [1.0] * (n - trained_from), dtype=np.float32)
    return make_example(tokens, weights, **kw)  # type: ignore[arg-type]


def test_shift_matches_tinker_datum() -> None:
    # tinker: inputs are tokens 0..N-2, targets tokens 1..N-1, target i carries weight of token i+1.
    ex = _ex(16, 11, max_length=None)
    assert isinstance(ex, Example)
    assert ex.input_ids.tolist() == list(range(100, 115))
    assert ex.target_ids.tolist() == list(range(101, 116))
    assert ex.weights.tolist() == [0.0] * 10 + [1.0] * 5
    assert ex.input_ids.dtype == np.int32 and ex.weights.dtype == np.float32
    assert not ex.truncated


def test_truncation_before_shift_gives_max_length_minus_one_inputs() -> None:
    ex = _ex(16, 5, max_length=8)
    assert isinstance(ex, Example)
    assert len(ex.input_ids) == 7 and ex.truncated
    assert ex.target_ids.tolist() == list(range(101, 108))


def test_overlong_drop() -> None:
    assert _ex(16, 5, max_length=8, overlong="drop") == Dropped(DROP_OVERLONG)


def test_nothing_trained_after_truncation_is_dropped_by_its_cause() -> None:
    # The row trained tokens 12..15; max_length 8 cut them all: a max_length problem.
    assert _ex(16, 12, max_length=8) == Dropped(DROP_TRUNCATED_AWAY)
    # Nothing trained before the cut either: the mask's doing (train_on, the data).
    assert _ex(16, 16, max_length=8) == Dropped(DROP_NO_TRAINED)
    assert _ex(4, 4, max_length=None) == Dropped(DROP_NO_TRAINED)


def test_batch_names_the_cause_as_one_at_a_time() -> None:
    rows = [(16, 12), (16, 16), (4, 4), (16, 3)]
    tokens = np.concatenate([np.arange(n, dtype=np.int32) for n, _ in rows])
    weights = np.concatenate(
        [np.array([0.0] * t + [1.0] * (n - t), dtype=np.float32) for n, t in rows]
    )
    offsets = np.concatenate([[0], np.cumsum([n for n, _ in rows])])
    batch = make_examples(tokens, weights, offsets, max_length=8)
    assert batch.dropped == {0: DROP_TRUNCATED_AWAY, 1: DROP_NO_TRAINED, 2: DROP_NO_TRAINED}
    assert batch.rows.tolist() == [3]


def test_too_short() -> None:
    assert _ex(1, 0, max_length=None) == Dropped(DROP_TOO_SHORT)


def test_mean_reduction_sums_to_one() -> None:
    ex = _ex(20, 10, max_length=None, reduction="mean")
    assert isinstance(ex, Example)
    assert ex.weights.sum() == pytest.approx(1.0)
    assert ex.weights.dtype == np.float32
    assert np.unique(ex.weights).tolist() == [0.0, pytest.approx(0.1)]


@pytest.mark.parametrize("max_length", [None, 1, 2, 7, 40])
@pytest.mark.parametrize("overlong", ["truncate", "drop"])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_batch_equals_one_at_a_time(max_length: int | None, overlong: str, reduction: str) -> None:
    rng = np.random.default_rng(7)
    lengths = rng.integers(0, 30, size=60)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    tokens = rng.integers(0, 50_000, size=offsets[-1]).astype(np.int32)
    weights = (rng.random(offsets[-1]) < 0.4).astype(np.float32)
    skip = {3, 17}
    kw = {"max_length": max_length, "overlong": overlong, "reduction": reduction}
    batch = make_examples(tokens, weights, offsets, skip=skip, **kw)  # type: ignore[arg-type]
    kept = iter(range(len(batch)))
    for i in range(len(lengths)):
        if i in skip:
            assert i not in batch.dropped and i not in batch.rows
            continue
        a, b = offsets[i], offsets[i + 1]
        want = make_example(tokens[a:b], weights[a:b], **kw)  # type: ignore[arg-type]
        if isinstance(want, Dropped):
            assert batch.dropped[i] == want.reason
            continue
        j = next(kept)
        assert batch.rows[j] == i
        got = batch.example(j)
        assert np.array_equal(got.input_ids, want.input_ids)
        assert np.array_equal(got.target_ids, want.target_ids)
        assert got.weights.dtype == np.float32
        assert np.array_equal(got.weights, want.weights)
        assert got.truncated == want.truncated
        assert batch.trained[j] == np.count_nonzero(want.weights)
    assert next(kept, None) is None

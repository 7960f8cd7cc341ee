from __future__ import annotations

import numpy as np
import pytest

from shardprep.encode.examples import (
    DROP_NO_TRAINED,
    DROP_OVERLONG,
    DROP_TOO_SHORT,
    Dropped,
    Example,
    make_example,
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


def test_nothing_trained_after_truncation_is_dropped() -> None:
    assert _ex(16, 12, max_length=8) == Dropped(DROP_NO_TRAINED)
    assert _ex(4, 4, max_length=None) == Dropped(DROP_NO_TRAINED)


def test_too_short() -> None:
    assert _ex(1, 0, max_length=None) == Dropped(DROP_TOO_SHORT)


def test_mean_reduction_sums_to_one() -> None:
    ex = _ex(20, 10, max_length=None, reduction="mean")
    assert isinstance(ex, Example)
    assert ex.weights.sum() == pytest.approx(1.0)
    assert ex.weights.dtype == np.float32
    assert np.unique(ex.weights).tolist() == [0.0, pytest.approx(0.1)]

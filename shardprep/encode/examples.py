"""Rendered (tokens, weights) -> training example arrays: truncate, then shift, as tinker's datum does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

# Stable reasons recorded in manifest stats.dropped.
DROP_OVERLONG = "overlong"
DROP_NO_TRAINED = "no_trained_tokens"
DROP_TOO_SHORT = "too_short"


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
    if max_length is not None and len(tokens) > max_length:
        if overlong == "drop":
            return Dropped(DROP_OVERLONG)
        tokens, weights, truncated = tokens[:max_length], weights[:max_length], True
    if len(tokens) < 2:
        return Dropped(DROP_TOO_SHORT)
    target_w = np.asarray(weights[1:], dtype=np.float32)
    total = float(target_w.sum(dtype=np.float64))
    if total <= 0.0:
        return Dropped(DROP_NO_TRAINED)
    if reduction == "mean":
        target_w = (target_w / np.float32(total)).astype(np.float32)
    ids = np.asarray(tokens, dtype=np.int32)
    return Example(input_ids=ids[:-1], target_ids=ids[1:], weights=target_w, truncated=truncated)

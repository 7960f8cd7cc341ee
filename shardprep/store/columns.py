"""Arrow columns every task's table shares (token lists, the dictionary-encoded source name)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def _list_array(chunks: list[np.ndarray], value_type: pa.DataType, np_type: type) -> pa.Array:
    lengths = np.fromiter((len(c) for c in chunks), dtype=np.int32, count=len(chunks))
    offsets = np.zeros(len(chunks) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values: np.ndarray = (
        np.concatenate(chunks).astype(np_type, copy=False) if chunks else np.zeros(0, np_type)
    )
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=value_type))


def int32_lists(chunks: list[np.ndarray]) -> pa.Array:
    return _list_array(chunks, pa.int32(), np.int32)


def float32_lists(chunks: list[np.ndarray]) -> pa.Array:
    return _list_array(chunks, pa.float32(), np.float32)


def source_column(sources: list[str]) -> pa.DictionaryArray:
    names = sorted(set(sources))
    index = {n: i for i, n in enumerate(names)}
    return pa.DictionaryArray.from_arrays(
        pa.array([index[s] for s in sources], type=pa.int32()), pa.array(names, type=pa.string())
    )


def source_row_column(rows: list[int]) -> pa.Array:
    return pa.array(rows, type=pa.int64())

"""Arrow columns every task's table shares (token lists, the dictionary-encoded source name)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa


def numeric_array(values: np.ndarray, value_type: pa.DataType) -> pa.Array:
    """A numpy array as an Arrow array over the same memory.

    Not `pa.array`: that imports pandas (about a second) on its first call in a process.
    """
    np_type = np.dtype(value_type.to_pandas_dtype())
    arr = np.ascontiguousarray(values, dtype=np_type)
    return pa.Array.from_buffers(value_type, len(arr), [None, pa.py_buffer(arr)])


def numpy_view(arr: pa.Array) -> np.ndarray:
    """A numeric Arrow array without nulls as a numpy array over the same memory.

    Not `Array.to_numpy()`: that imports pandas (over half a second) on its first call in a process.
    """
    t = arr.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
        raise TypeError(f"numpy_view: {t} is not an integer or floating-point type")
    if arr.null_count:
        raise ValueError(f"numpy_view: the array has {arr.null_count} nulls")
    dtype = np.dtype(t.to_pandas_dtype())
    data = arr.buffers()[1]
    if data is None:  # an empty array may have no data buffer at all
        return np.zeros(0, dtype=dtype)
    return np.frombuffer(data, dtype=dtype)[arr.offset : arr.offset + len(arr)]


def flat_lists(values: np.ndarray, offsets: np.ndarray, value_type: pa.DataType) -> pa.Array:
    """A list column from one flat values buffer and its row offsets (len rows + 1)."""
    return pa.ListArray.from_arrays(
        numeric_array(offsets, pa.int32()), numeric_array(values, value_type)
    )


def _list_array(chunks: list[np.ndarray], value_type: pa.DataType, np_type: type) -> pa.Array:
    lengths = np.fromiter((len(c) for c in chunks), dtype=np.int32, count=len(chunks))
    offsets = np.zeros(len(chunks) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values: np.ndarray = (
        np.concatenate(chunks).astype(np_type, copy=False) if chunks else np.zeros(0, np_type)
    )
    return flat_lists(values, offsets, value_type)


def int32_lists(chunks: list[np.ndarray]) -> pa.Array:
    return _list_array(chunks, pa.int32(), np.int32)


def float32_lists(chunks: list[np.ndarray]) -> pa.Array:
    return _list_array(chunks, pa.float32(), np.float32)


def int32_column(values: Sequence[int] | np.ndarray) -> pa.Array:
    return numeric_array(np.asarray(values, dtype=np.int32), pa.int32())


def string_array(names: Sequence[str]) -> pa.Array:
    """Strings from their UTF-8 bytes and offsets (not `pa.array`, which imports pandas)."""
    data = [n.encode("utf-8") for n in names]
    offsets = np.zeros(len(data) + 1, dtype=np.int32)
    np.cumsum([len(d) for d in data], out=offsets[1:])
    return pa.StringArray.from_buffers(
        len(data), pa.py_buffer(offsets), pa.py_buffer(b"".join(data))
    )


def source_column(sources: list[str]) -> pa.DictionaryArray:
    names = sorted(set(sources))
    index = {n: i for i, n in enumerate(names)}
    indices = np.fromiter((index[s] for s in sources), dtype=np.int32, count=len(sources))
    return pa.DictionaryArray.from_arrays(numeric_array(indices, pa.int32()), string_array(names))


def one_source_column(name: str, rows: int) -> pa.DictionaryArray:
    """`source_column([name] * rows)` without the list."""
    return pa.DictionaryArray.from_arrays(
        numeric_array(np.zeros(rows, dtype=np.int32), pa.int32()), string_array([name])
    )


def source_row_column(rows: Sequence[int] | np.ndarray) -> pa.Array:
    return numeric_array(np.asarray(rows, dtype=np.int64), pa.int64())

"""Arrow columns every task's table shares (token lists, the dictionary-encoded source name)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from shardprep.store.shards import _list_array


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


SOURCE_FIELDS = [
    pa.field("source", pa.dictionary(pa.int32(), pa.string()), nullable=False),
    pa.field("source_row", pa.int64(), nullable=False),
]

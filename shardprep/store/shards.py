"""Parquet shards: explicit schema, zstd, sized by rows and bytes, written whole then placed atomically."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shardprep.encode.examples import Example
from shardprep.store.storage import Output, sha256_file

SFT_SCHEMA = pa.schema(
    [
        pa.field("input_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("target_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("weights", pa.list_(pa.float32()), nullable=False),
        pa.field("length", pa.int32(), nullable=False),
        pa.field("source", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("source_row", pa.int64(), nullable=False),
    ],
    metadata={"shardprep.schema": "sft/1"},
)

# Per example: 4 + 4 + 4 bytes per token in the three lists, plus list offsets and fixed columns.
_BYTES_PER_TOKEN = 12
_BYTES_PER_ROW = 32


def _list_array(chunks: list[np.ndarray], value_type: pa.DataType, np_type: type) -> pa.Array:
    lengths = np.fromiter((len(c) for c in chunks), dtype=np.int32, count=len(chunks))
    offsets = np.zeros(len(chunks) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values: np.ndarray = np.concatenate(chunks).astype(np_type, copy=False) if chunks else np.zeros(0, np_type)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=value_type))


def examples_table(examples: list[Example], sources: list[str], source_rows: list[int]) -> pa.Table:
    source_names = sorted(set(sources))
    index = {n: i for i, n in enumerate(source_names)}
    source_arr = pa.DictionaryArray.from_arrays(
        pa.array([index[s] for s in sources], type=pa.int32()), pa.array(source_names, type=pa.string())
    )
    return pa.Table.from_arrays(
        [
            _list_array([e.input_ids for e in examples], pa.int32(), np.int32),
            _list_array([e.target_ids for e in examples], pa.int32(), np.int32),
            _list_array([e.weights for e in examples], pa.float32(), np.float32),
            pa.array([len(e.input_ids) for e in examples], type=pa.int32()),
            source_arr,
            pa.array(source_rows, type=pa.int64()),
        ],
        schema=SFT_SCHEMA,
    )


@dataclass
class ShardInfo:
    path: str
    rows: int
    tokens: int
    trained_tokens: int
    bytes: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "rows": self.rows,
            "tokens": self.tokens,
            "trained_tokens": self.trained_tokens,
            "bytes": self.bytes,
            "sha256": self.sha256,
        }


@dataclass
class ShardWriter:
    """Buffers one split's records and cuts a shard at max_rows or about max_bytes.

    Records are whatever the task's `to_table(records, sources, source_rows)` turns into an Arrow
    table of its schema; the writer only counts them and places the finished file.
    """

    output: Output
    folder: str  # relative to the output root
    prefix: str  # shard names are PREFIX-NNNN.parquet
    max_rows: int
    max_bytes: int
    row_group_rows: int = 1024
    to_table: Callable[[list[Any], list[str], list[int]], pa.Table] = field(default=lambda r, s, i: examples_table(r, s, i))
    shards: list[ShardInfo] = field(default_factory=list)
    _records: list[Any] = field(default_factory=list)
    _sources: list[str] = field(default_factory=list)
    _rows: list[int] = field(default_factory=list)
    _bytes: int = 0
    _tokens: int = 0
    _trained: int = 0

    def add(self, record: Any, source: str, source_row: int, *, tokens: int, trained: int) -> None:
        self._records.append(record)
        self._sources.append(source)
        self._rows.append(source_row)
        self._tokens += tokens
        self._trained += trained
        self._bytes += _BYTES_PER_ROW + _BYTES_PER_TOKEN * tokens
        if len(self._records) >= self.max_rows or self._bytes >= self.max_bytes:
            self.flush()

    def add_example(self, example: Example, source: str, source_row: int) -> None:
        self.add(
            example, source, source_row, tokens=len(example.input_ids), trained=int(np.count_nonzero(example.weights))
        )

    def flush(self) -> None:
        if not self._records:
            return
        table = self.to_table(self._records, self._sources, self._rows)
        name = f"{self.prefix}-{len(self.shards):04d}.parquet"
        rel = f"{self.folder}/{name}"
        tmpdir = self.output.local_tempdir()
        try:
            tmp = os.path.join(tmpdir, name)
            pq.write_table(table, tmp, compression="zstd", row_group_size=self.row_group_rows)
            size = os.path.getsize(tmp)
            digest = sha256_file(tmp)
            self.output.place(tmp, rel)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        self.shards.append(
            ShardInfo(path=rel, rows=table.num_rows, tokens=self._tokens, trained_tokens=self._trained, bytes=size, sha256=digest)
        )
        self._records, self._sources, self._rows = [], [], []
        self._bytes = self._tokens = self._trained = 0

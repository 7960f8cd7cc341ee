"""Parquet shards: explicit schema, zstd, sized by rows and bytes, written whole then placed atomically."""

from __future__ import annotations

import contextlib
import os
import posixpath
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shardprep.store.storage import Output, naming_errors, sha256_file

# Per example: 4 + 4 + 4 bytes per token in the three lists, plus list offsets and fixed columns.
_BYTES_PER_TOKEN = 12
_BYTES_PER_ROW = 32


def _is_token_list(t: pa.DataType) -> bool:
    """list<int32> / list<float32>: token ids, weights, document offsets."""
    return pa.types.is_list(t) and t.value_type in (pa.int32(), pa.float32())


def _leaf_paths(name: str, t: pa.DataType) -> list[str]:
    """The Parquet column paths of one Arrow field (what per-column writer options name)."""
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _leaf_paths(f"{name}.list.element", t.value_type)
    if pa.types.is_map(t):
        return [
            *_leaf_paths(f"{name}.key_value.key", t.key_type),
            *_leaf_paths(f"{name}.key_value.value", t.item_type),
        ]
    if pa.types.is_struct(t):
        return [p for f in t for p in _leaf_paths(f"{name}.{f.name}", f.type)]
    return [name]


def parquet_writer(schema: pa.Schema, path: str) -> pq.ParquetWriter:
    """The one way a shard is encoded (unit shards and merged ones alike): zstd (level 1).

    The token lists (ids, weights, offsets) get neither dictionary encoding nor min/max
    statistics: with zstd on top, plain values make smaller files from real text (14 % on the
    LLaMA-Factory chat demos through Qwen3's tokenizer) for about a quarter less write CPU; a
    dictionary wins only on a vocabulary of a few hundred ids, and no reader filters by a token
    id. The other columns (lengths, source, passthrough values) keep both.
    """
    encoded = [p for f in schema if not _is_token_list(f.type) for p in _leaf_paths(f.name, f.type)]
    return pq.ParquetWriter(
        path, schema, compression="zstd", use_dictionary=encoded, write_statistics=encoded
    )


def write_parquet(table: pa.Table, path: str, row_group_rows: int) -> None:
    """`table` as one Parquet file (parquet_writer's encoding), `row_group_rows` per row group."""
    with parquet_writer(table.schema, path) as writer:
        writer.write_table(table, row_group_size=row_group_rows)


def source_carrier(schema: pa.Schema, dictionary: pa.Array) -> pa.Table:
    """A table of no rows whose `source` column holds `dictionary`: put first in a table whose
    dictionaries are unified, it makes the result's dictionary start with `dictionary`'s values
    in its order (pa.nulls: schema.empty_table and pa.array import pandas, about a second)."""
    return pa.Table.from_arrays(
        [
            pa.DictionaryArray.from_arrays(pa.nulls(0, pa.int32()), dictionary)
            if f.name == "source"
            else pa.nulls(0, f.type)
            for f in schema
        ],
        schema=schema,
    )


class RowGroupStream:
    """A Parquet shard written row group by row group as its rows come (to a local temporary
    file, placed at `rel` by `close`): `write_parquet`'s bytes for the same rows, provided
    `dictionary` is the one the whole table's `source` would have (its values in the order
    unify_dictionaries gives) and holds every name the tables handed in use. The caller knows
    it early enough only when no later row can bring a new name (build/compact.py). Each whole
    group of `row_group_rows` rows is written as soon as it is complete."""

    def __init__(
        self,
        output: Output,
        rel: str,
        schema: pa.Schema,
        row_group_rows: int,
        *,
        dictionary: pa.Array,
    ) -> None:
        self.output, self.rel, self.group = output, rel, row_group_rows
        self.dictionary = dictionary
        # Unified ahead of what comes, it puts every row on the final dictionary.
        self.carrier = source_carrier(schema, dictionary)
        self.tmp = output.local_tempfile(posixpath.basename(rel))
        with naming_errors(self.tmp):
            self.writer: pq.ParquetWriter | None = parquet_writer(schema, self.tmp)
        self.pending: list[pa.Table] = []
        self.pending_rows = 0

    def write(self, table: pa.Table) -> None:
        self.pending.append(table)
        self.pending_rows += table.num_rows
        if self.pending_rows >= self.group:
            self._drain(whole_groups_only=True)

    def _drain(self, *, whole_groups_only: bool) -> None:
        assert self.writer is not None
        # One contiguous chunk per write, as write_parquet's whole table is: a chunk boundary
        # inside a row group would move its page boundaries.
        table = pa.concat_tables([self.carrier, *self.pending]).unify_dictionaries()
        table = table.combine_chunks()
        n = (table.num_rows // self.group) * self.group if whole_groups_only else table.num_rows
        if n:
            with naming_errors(self.tmp):
                self.writer.write_table(table.slice(0, n), row_group_size=self.group)
        rest = table.slice(n)
        self.pending, self.pending_rows = ([rest] if rest.num_rows else []), rest.num_rows

    def close(self) -> tuple[int, str]:
        """The rest written, the file placed at `rel`; its size and sha256."""
        try:
            if self.pending_rows:
                self._drain(whole_groups_only=False)
            assert self.writer is not None
            with naming_errors(self.tmp):
                self.writer.close()
            self.writer = None
            size, digest = os.path.getsize(self.tmp), sha256_file(self.tmp)
            self.output.place(self.tmp, self.rel)
        finally:
            self.abandon()
        return size, digest

    def abandon(self) -> None:
        """Stop writing and remove the temporary file (nothing is placed)."""
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
            self.writer = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)
        self.pending, self.pending_rows = [], 0


# A work unit's shards are scratch: compaction reads every one back and writes the build's Parquet
# shards from them. Arrow IPC with LZ4 buffers costs a fifth of a Parquet zstd write to make and
# a tenth to read (64 unit shards of the bench: 0.15 + 0.16 CPU-s against 0.54 + 0.39), at about
# 2 bytes per token on disk until the commit removes them. Without Arrow's own threads: the build's
# processes are its parallelism, and handing a unit's few buffers to a thread pool cost more CPU
# than it saved (240-row unit shards of the bench: reading 0.023-0.028 CPU-s against 0.039-0.051).
SCRATCH_SUFFIX = ".arrow"
_SCRATCH_OPTIONS: pa.ipc.IpcWriteOptions | None = None


def write_scratch(table: pa.Table, path: str) -> None:
    """A unit shard: one Arrow IPC file (LZ4-compressed buffers)."""
    global _SCRATCH_OPTIONS
    if _SCRATCH_OPTIONS is None:
        _SCRATCH_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4", use_threads=False)
    with (
        pa.OSFile(path, "wb") as sink,
        pa.ipc.new_file(sink, table.schema, options=_SCRATCH_OPTIONS) as w,
    ):
        w.write_table(table)


def read_shard_file(data: bytes, name: str) -> pa.Table:
    """A unit shard's bytes as a table: scratch IPC, or Parquet (a unit finished by a version
    that wrote Parquet unit shards, resumed by this one), told apart by the name's suffix."""
    if name.endswith(SCRATCH_SUFFIX):
        options = pa.ipc.IpcReadOptions(use_threads=False)
        return pa.ipc.open_file(pa.py_buffer(data), options=options).read_all()
    # ParquetFile, not read_table: that imports pyarrow.dataset (over a CPU-second).
    return pq.ParquetFile(pa.BufferReader(data)).read()


def place_shard(output: Output, table: pa.Table, rel: str, row_group_rows: int) -> tuple[int, str]:
    """`table` written to a local temporary file (Parquet, or scratch IPC for a `.arrow` name),
    hashed and placed whole at `rel`; its size and sha256."""
    tmp = output.local_tempfile(posixpath.basename(rel))
    try:
        with naming_errors(tmp):
            if rel.endswith(SCRATCH_SUFFIX):
                write_scratch(table, tmp)
            else:
                write_parquet(table, tmp, row_group_rows)
        size, digest = os.path.getsize(tmp), sha256_file(tmp)
        output.place(tmp, rel)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # only when placing failed: a placed file is no longer there
    return size, digest


class TableBuilder(Protocol):
    """A task's records (with their source names and rows) -> an Arrow table of its schema."""

    def __call__(
        self, records: list[Any], sources: list[str], source_rows: list[int], /
    ) -> pa.Table: ...


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
    """Buffers one split's records and cuts a shard at max_rows or about max_bytes: a work unit's
    scratch shards (`.arrow`), which compaction turns into the build's Parquet shards.

    Records are whatever the task's `to_table(records, sources, source_rows)` turns into an Arrow
    table of its schema; the writer only counts them and places the finished file.
    """

    output: Output
    folder: str  # relative to the output root
    prefix: str  # shard names are PREFIX-NNNN.arrow
    max_rows: int
    max_bytes: int
    row_group_rows: int = 1024
    to_table: TableBuilder = field(kw_only=True)
    shards: list[ShardInfo] = field(default_factory=list)
    _records: list[Any] = field(default_factory=list)
    _sources: list[str] = field(default_factory=list)
    _rows: list[int] = field(default_factory=list)
    _bytes: int = 0
    _tokens: int = 0
    _trained: int = 0
    _parts: list[pa.Table] = field(default_factory=list)  # add_table's rows, in order
    _part_rows: int = 0

    def add(self, record: Any, source: str, source_row: int, *, tokens: int, trained: int) -> None:
        assert not self._parts, "one writer takes records or tables, not both"
        self._records.append(record)
        self._sources.append(source)
        self._rows.append(source_row)
        self._tokens += tokens
        self._trained += trained
        self._bytes += _BYTES_PER_ROW + _BYTES_PER_TOKEN * tokens
        if len(self._records) >= self.max_rows or self._bytes >= self.max_bytes:
            self.flush()

    def add_table(self, table: pa.Table, tokens: np.ndarray, trained: np.ndarray) -> None:
        """Rows already built as one table of the task's schema (from a batch's flat buffers),
        with each row's token and trained-token counts. Shards are cut exactly where `add`, one
        row at a time, would cut them."""
        assert not self._records, "one writer takes records or tables, not both"
        n, pos = table.num_rows, 0
        row_bytes = _BYTES_PER_ROW + _BYTES_PER_TOKEN * np.asarray(tokens, dtype=np.int64)
        while pos < n:
            cum = np.cumsum(row_bytes[pos:]) + self._bytes
            over = np.flatnonzero(cum >= self.max_bytes)
            k = min(n - pos, self.max_rows - self._part_rows, int(over[0]) + 1 if len(over) else n)
            self._parts.append(table.slice(pos, k))
            self._part_rows += k
            self._tokens += int(tokens[pos : pos + k].sum())
            self._trained += int(trained[pos : pos + k].sum())
            self._bytes = int(cum[k - 1])
            pos += k
            if self._part_rows >= self.max_rows or self._bytes >= self.max_bytes:
                self.flush()

    def _table(self) -> pa.Table | None:
        if self._parts:
            # One chunk and one dictionary, as a table built from records would be.
            return pa.concat_tables(self._parts).unify_dictionaries().combine_chunks()
        if self._records:
            return self.to_table(self._records, self._sources, self._rows)
        return None

    def flush(self) -> None:
        table = self._table()
        if table is None:
            return
        rel = f"{self.folder}/{self.prefix}-{len(self.shards):04d}{SCRATCH_SUFFIX}"
        size, digest = place_shard(self.output, table, rel, self.row_group_rows)
        self.shards.append(
            ShardInfo(
                path=rel,
                rows=table.num_rows,
                tokens=self._tokens,
                trained_tokens=self._trained,
                bytes=size,
                sha256=digest,
            )
        )
        self._records, self._sources, self._rows = [], [], []
        self._parts = []
        self._bytes = self._tokens = self._trained = self._part_rows = 0


class RowSink(Protocol):
    """Where a task's runner puts its records: a shard writer, or memory (preview)."""

    def add(
        self, record: Any, source: str, source_row: int, *, tokens: int, trained: int
    ) -> None: ...

    def add_table(self, table: pa.Table, tokens: np.ndarray, trained: np.ndarray) -> None: ...


@dataclass
class MemoryWriter:
    """Keeps records as one Arrow table, built by the same `to_table` as the shards (preview)."""

    to_table: TableBuilder
    _records: list[Any] = field(default_factory=list)
    _sources: list[str] = field(default_factory=list)
    _rows: list[int] = field(default_factory=list)

    def add(self, record: Any, source: str, source_row: int, *, tokens: int, trained: int) -> None:
        self._records.append(record)
        self._sources.append(source)
        self._rows.append(source_row)

    _parts: list[pa.Table] = field(default_factory=list)

    def add_table(self, table: pa.Table, tokens: np.ndarray, trained: np.ndarray) -> None:
        assert not self._records, "one writer takes records or tables, not both"
        self._parts.append(table)

    def table(self) -> pa.Table | None:
        if self._parts:
            return pa.concat_tables(self._parts).unify_dictionaries().combine_chunks()
        return self.to_table(self._records, self._sources, self._rows) if self._records else None

"""Shards of the size asked for: at commit, a split's per-unit shards are merged, in order, into
files of about `max_bytes` (and at most `max_rows` rows).

Work units write their own shards (that is what makes resume exact), so a build of many small
units would otherwise leave many small files, slow on object stores and for readers. Merging
keeps the row order (unit order), so the output never depends on workers or resumes. The merged
files are written before the manifest; the unit shards are removed only after it, by the build's
sweep of unreferenced files, so a build killed while merging resumes from its finished units and
merges again to the same files.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shardprep.store.columns import numpy_view
from shardprep.store.schemas import ShardSchema
from shardprep.store.shards import place_shard
from shardprep.store.storage import Output


def shard_target(shards: list[dict[str, Any]], *, max_rows: int, max_bytes: int) -> int:
    """The fewest files the split's rows and bytes need."""
    rows = sum(int(s["rows"]) for s in shards)
    size = sum(int(s["bytes"]) for s in shards)
    return max(1, math.ceil(size / max_bytes), math.ceil(rows / max_rows))


def _per_row(table: pa.Table, schema: ShardSchema) -> tuple[np.ndarray, np.ndarray]:
    """Tokens and trained tokens of each row, as the writer counted them for the whole shard."""
    tokens = np.zeros(table.num_rows, dtype=np.int64)
    for col in schema.length_columns:
        tokens += numpy_view(table.column(col).combine_chunks())
    trained = np.zeros(table.num_rows, dtype=np.int64)
    for prefix in schema.sequences:
        weights = table.column(f"{prefix}weights").combine_chunks()
        # The child values, not flatten(): that imports pyarrow.compute (a third of a second).
        offsets = numpy_view(weights.offsets)
        ends = np.zeros(len(weights.values) + 1, dtype=np.int64)
        np.cumsum(numpy_view(weights.values) > 0, out=ends[1:])
        trained += ends[offsets[1:]] - ends[offsets[:-1]]
    return tokens, trained


def _read(output: Output, rel: str) -> pa.Table:
    # ParquetFile, not read_table: that imports pyarrow.dataset (over a CPU-second). A local
    # shard is opened by path: pyarrow's own file reads it in a fifth less CPU than fsspec's.
    if output.is_local:
        return pq.ParquetFile(output.path(rel)).read()
    with output.fs.open(output.path(rel), "rb") as f:
        return pq.ParquetFile(f).read()


class _Merged:
    """Writes merged shards `{split}-NNNNN.parquet` in the data folder, like ShardWriter.flush."""

    def __init__(self, output: Output, folder: str, split: str, row_group_rows: int) -> None:
        self.output, self.folder, self.split, self.row_group_rows = (
            output,
            folder,
            split,
            row_group_rows,
        )
        self.shards: list[dict[str, Any]] = []
        self.parts: list[pa.Table] = []
        self.rows = self.tokens = self.trained = 0
        self.size = 0.0

    def add(self, part: pa.Table, tokens: int, trained: int, size: float) -> None:
        self.parts.append(part)
        self.rows += part.num_rows
        self.tokens += tokens
        self.trained += trained
        self.size += size

    def flush(self) -> None:
        if not self.parts:
            return
        table = pa.concat_tables(self.parts).unify_dictionaries().combine_chunks()
        rel = f"{self.folder}/{self.split}-{len(self.shards):05d}.parquet"
        size, digest = place_shard(self.output, table, rel, self.row_group_rows)
        self.shards.append(
            {
                "path": rel,
                "rows": table.num_rows,
                "tokens": self.tokens,
                "trained_tokens": self.trained,
                "bytes": size,
                "sha256": digest,
            }
        )
        self.parts = []
        self.rows = self.tokens = self.trained = 0
        self.size = 0.0


def compact_split(
    output: Output,
    folder: str,
    split: str,
    shards: list[dict[str, Any]],
    schema: ShardSchema,
    *,
    max_rows: int,
    max_bytes: int,
    row_group_rows: int,
) -> list[dict[str, Any]]:
    """The split's shards merged in order into about shard_target() files; returns their entries
    (unchanged when the split already has no more files than that)."""
    if len(shards) <= shard_target(shards, max_rows=max_rows, max_bytes=max_bytes):
        return shards
    out = _Merged(output, folder, split, row_group_rows)
    for s in shards:
        table = _read(output, s["path"])
        tokens, trained = _per_row(table, schema)
        # A row's share of its shard's bytes, by its tokens (what a shard's size mostly is).
        per_token = int(s["bytes"]) / max(1, int(tokens.sum()))
        sizes = np.maximum(tokens, 1) * per_token
        pos = 0
        while pos < table.num_rows:
            room_bytes = max_bytes - out.size
            room_rows = max_rows - out.rows
            fit = int(np.searchsorted(np.cumsum(sizes[pos:]), room_bytes, side="right"))
            k = min(fit, room_rows, table.num_rows - pos)
            if k <= 0:
                if out.rows:
                    out.flush()
                    continue
                k = 1  # one row larger than max_bytes: a file of its own
            out.add(
                table.slice(pos, k),
                int(tokens[pos : pos + k].sum()),
                int(trained[pos : pos + k].sum()),
                float(sizes[pos : pos + k].sum()),
            )
            pos += k
            if out.rows >= max_rows or out.size >= max_bytes:
                out.flush()
    out.flush()
    return out.shards


def compact_manifest(
    output: Output,
    folder: str,
    manifest: dict[str, Any],
    schema: ShardSchema,
    *,
    max_rows: int,
    max_bytes: int,
    row_group_rows: int,
) -> list[str]:
    """Every split of the manifest compacted in place; returns the unit shards merged away (to
    remove once the manifest that no longer lists them is written)."""
    replaced: list[str] = []
    for split, info in manifest["splits"].items():
        before = info["shards"]
        try:
            info["shards"] = compact_split(
                output,
                folder,
                split,
                before,
                schema,
                max_rows=max_rows,
                max_bytes=max_bytes,
                row_group_rows=row_group_rows,
            )
        except FileNotFoundError:
            # A unit shard the store lost: left as listed, so the build's check of every listed
            # shard names the lost ones and fails before any manifest.
            continue
        if info["shards"] is not before:
            replaced += [s["path"] for s in before]
    return replaced

"""The build's shards: at commit, a split's unit shards are merged, in order, into Parquet files of
about `max_bytes` (and at most `max_rows` rows).

Work units write their own shards (that is what makes resume exact): scratch Arrow IPC files
(`store/shards.write_scratch`), cheap to write and to read back. Compaction always turns them into
the build's Parquet shards, one encoding for every build whatever its unit count, and the output
never depends on workers or resumes (unit order is row order). Each unit shard is checked against
the sha256 its unit recorded before it is used: a damaged one is never merged (its unit is redone).
The merged files are written before the manifest; the unit shards are removed only after it, by
the build's sweep of unreferenced files, so a build killed while merging resumes from its
finished units and merges again to the same files.

Cutting at `max_bytes` needs each row's share of a Parquet file before the file exists: a row's
share of its unit shard's bytes (by its tokens) times the ratio of Parquet to unit-shard bytes
seen so far in the split (1 before the first file: scratch is the larger, so a first file never
exceeds `max_bytes`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from shardprep.store.columns import numpy_view
from shardprep.store.schemas import ShardSchema
from shardprep.store.shards import (
    RowGroupStream,
    place_shard,
    read_shard_file,
    source_carrier,
)
from shardprep.store.storage import Output


class DamagedUnitShard(Exception):
    """A unit shard whose bytes are not the ones its unit recorded (never merged into a shard)."""

    def __init__(self, rel: str) -> None:
        super().__init__(rel)
        self.rel = rel


def per_row(table: pa.Table, schema: ShardSchema) -> tuple[np.ndarray, np.ndarray]:
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


def read_unit_shard(output: Output, shard: dict[str, Any]) -> pa.Table:
    """A unit shard, checked against the sha256 its unit recorded before any of it is used (a
    local one read by path: pyarrow's own file costs a fifth less CPU than fsspec's)."""
    rel = shard["path"]
    if output.is_local:
        with open(output.path(rel), "rb") as f:
            data = f.read()
    else:
        with output.fs.open(output.path(rel), "rb") as f:
            data = f.read()
    if hashlib.sha256(data).hexdigest() != shard["sha256"]:
        raise DamagedUnitShard(rel)
    return read_shard_file(data, rel)


def _kept(table: pa.Table, mask: np.ndarray) -> pa.Table:
    """The rows of `table` where `mask` holds, in order: slices of its runs (no pyarrow.compute,
    which costs a third of a second to import)."""
    edges = np.flatnonzero(np.diff(np.concatenate([[False], mask, [False]]).astype(np.int8)))
    parts = [table.slice(a, b - a) for a, b in zip(edges[::2], edges[1::2], strict=True)]
    return pa.concat_tables(parts) if parts else table.slice(0, 0)


def _source_dictionary(table: pa.Table) -> pa.Array:
    """The dictionary of a table's `source` column whose chunks share one (unified)."""
    return table.column("source").chunk(0).dictionary


def _unified(dictionary: pa.Array | None, part: pa.Table) -> pa.Array:
    """The `source` dictionary of the rows so far (`dictionary`) followed by `part`, as
    unify_dictionaries makes it for the whole shard: the union of the chunks' dictionaries in
    order."""
    tables = [part] if dictionary is None else [source_carrier(part.schema, dictionary), part]
    return _source_dictionary(pa.concat_tables(tables).unify_dictionaries())


class _Merged:
    """Writes merged shards `{split}-NNNNN.parquet` in the data folder.

    `ahead`: the source names the rest of the build may still bring (None: it is all here). A
    shard's `source` dictionary is the union of its rows' names in order, so its final value is
    known before its last row only once no name can come that it lacks; from then on the shard
    is written row group by row group as its rows come (store/shards.RowGroupStream) instead of
    in one pass at its end, which for the build's last shard is after its last unit. The parts
    are kept all the same: the file is placed only where the whole shard's dictionary turns out
    to be the one streamed, else it is written whole as before."""

    def __init__(
        self,
        output: Output,
        folder: str,
        split: str,
        row_group_rows: int,
        ahead: Callable[[], frozenset[str]] | None = None,
    ) -> None:
        self.output, self.folder, self.split = output, folder, split
        self.row_group_rows = row_group_rows
        self.ahead = ahead
        self.shards: list[dict[str, Any]] = []
        self.parts: list[pa.Table] = []
        self.rows = self.tokens = self.trained = 0
        self.size = 0.0  # estimated Parquet bytes of the parts
        self.scratch = 0.0  # unit-shard bytes of the parts
        # Parquet bytes per unit-shard byte, from the files written so far.
        self.written = self.written_scratch = 0.0
        self.dictionary: pa.Array | None = None  # the parts' unified `source` dictionary
        self.stream: RowGroupStream | None = None
        self.unstreamable = False  # this shard's dictionary changed after streaming began

    @property
    def ratio(self) -> float:
        return self.written / self.written_scratch if self.written_scratch else 1.0

    @property
    def rel(self) -> str:
        return f"{self.folder}/{self.split}-{len(self.shards):05d}.parquet"

    def add(self, part: pa.Table, tokens: int, trained: int, scratch: float) -> None:
        self.parts.append(part)
        self.rows += part.num_rows
        self.tokens += tokens
        self.trained += trained
        self.scratch += scratch
        self.size += scratch * self.ratio
        if self.ahead is not None and not self.unstreamable:
            self._stream(part)

    def _stream(self, part: pa.Table) -> None:
        assert self.ahead is not None
        before, self.dictionary = self.dictionary, _unified(self.dictionary, part)
        if self.stream is not None:
            if before is not None and self.dictionary.equals(before):
                self.stream.write(part)
            else:  # a name the build was not expected to bring: written whole at the end
                self.stream.abandon()
                self.stream, self.unstreamable = None, True
        elif _only_source_dictionary(part.schema) and self.ahead() <= set(
            self.dictionary.to_pylist()
        ):
            self.stream = RowGroupStream(
                self.output,
                self.rel,
                part.schema,
                self.row_group_rows,
                dictionary=self.dictionary,
            )
            for p in self.parts:
                self.stream.write(p)

    def abandon(self) -> None:
        """Remove a shard's partly streamed file (the build stopped before its end)."""
        if self.stream is not None:
            self.stream.abandon()
            self.stream = None

    def flush(self) -> None:
        if not self.parts:
            return
        table = pa.concat_tables(self.parts).unify_dictionaries()
        rel = self.rel
        stream, self.stream = self.stream, None
        if stream is not None and _source_dictionary(table).equals(stream.dictionary):
            size, digest = stream.close()
        else:
            if stream is not None:
                stream.abandon()
            size, digest = place_shard(
                self.output, table.combine_chunks(), rel, self.row_group_rows
            )
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
        self.written += size
        self.written_scratch += self.scratch
        self.parts = []
        self.rows = self.tokens = self.trained = 0
        self.size = self.scratch = 0.0
        self.dictionary, self.unstreamable = None, False


def _only_source_dictionary(schema: pa.Schema) -> bool:
    """Whether `source` is the table's one dictionary column (the one whose names are known
    ahead: other dictionary columns could bring any value)."""
    return [f.name for f in schema if pa.types.is_dictionary(f.type)] == ["source"]


class SplitCompactor:
    """One split's unit shards merged in order: `add` each unit shard entry as its unit is done
    (in unit order), `finish` for the merged entries. Fed all at once at commit
    (`compact_split`) or while later units still run (`Streaming`): the same calls in the same
    order, so the same files."""

    def __init__(
        self,
        output: Output,
        folder: str,
        split: str,
        schema: ShardSchema,
        *,
        max_rows: int,
        max_bytes: int,
        row_group_rows: int,
        keep: dict[str, np.ndarray] | None = None,
        ahead: Callable[[], frozenset[str]] | None = None,
    ) -> None:
        self.output, self.schema, self.keep = output, schema, keep
        self.max_rows, self.max_bytes = max_rows, max_bytes
        self.out = _Merged(output, folder, split, row_group_rows, ahead)

    def add(self, s: dict[str, Any]) -> None:
        out, max_rows, max_bytes = self.out, self.max_rows, self.max_bytes
        table = read_unit_shard(self.output, s)
        tokens, trained = per_row(table, self.schema)
        if self.keep is not None and s["path"] in self.keep:  # rows dedup dropped
            mask = self.keep[s["path"]]
            table, tokens, trained = _kept(table, mask), tokens[mask], trained[mask]
        # A row's share of its unit shard's bytes, by its tokens (what a shard's size mostly is).
        per_token = int(s["bytes"]) / max(1, int(tokens.sum()))
        scratch = np.maximum(tokens, 1) * per_token
        pos = 0
        while pos < table.num_rows:
            room_bytes = (max_bytes - out.size) / out.ratio  # in unit-shard bytes
            room_rows = max_rows - out.rows
            fit = int(np.searchsorted(np.cumsum(scratch[pos:]), room_bytes, side="right"))
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
                float(scratch[pos : pos + k].sum()),
            )
            pos += k
            if out.rows >= max_rows or out.size >= max_bytes:
                out.flush()

    def finish(self) -> list[dict[str, Any]]:
        self.out.flush()
        return self.out.shards


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
    keep: dict[str, np.ndarray] | None = None,
) -> list[dict[str, Any]]:
    """The split's unit shards merged in order into Parquet files; returns their entries.
    `keep`: per unit shard, the rows to merge (build/dedup.py); every row of the others."""
    merged = SplitCompactor(
        output,
        folder,
        split,
        schema,
        max_rows=max_rows,
        max_bytes=max_bytes,
        row_group_rows=row_group_rows,
        keep=keep,
    )
    for s in shards:
        merged.add(s)
    return merged.finish()


class Streaming:
    """Compaction while the build runs: each unit's shards are merged as soon as every unit
    before it is done (the driver does it between results, while the pool's workers run later
    units), instead of in one pass after the last unit. Only where nothing decided at commit
    changes which rows are merged (no dedup or decontaminate).

    `units`: the unit indices in order, `names` their sources' names (what their rows' `source`
    holds: a shard streams its file once no later unit can add a name to it); `offer(results)`
    merges the done prefix; `take(split, shards)` returns the merged entries when exactly those
    unit shards were fed, else None (the commit's own pass then runs, as before: after a damaged
    or lost unit shard, for one); `close()` removes what a build that stops early streamed."""

    def __init__(
        self,
        output: Output,
        folder: str,
        schema: ShardSchema,
        units: list[int],
        names: list[str],
        **sizes: int,
    ) -> None:
        self.output, self.folder, self.schema, self.sizes = output, folder, schema, sizes
        self.units, self.names, self.next = units, names, 0
        # The names of units[i:], for each i (a few distinct sets: sources come in runs).
        self.names_from: list[frozenset[str]] = [frozenset()] * (len(units) + 1)
        for i in range(len(units) - 1, -1, -1):
            later = self.names_from[i + 1]
            self.names_from[i] = later if names[i] in later else later | {names[i]}
        self.fed: dict[str, list[str]] = {}
        self.splits: dict[str, SplitCompactor] = {}
        self.failed = False

    def offer(self, results: Mapping[int, Any]) -> None:
        """Merge every unit whose turn has come (`results`: unit index -> UnitResult)."""
        while not self.failed and self.next < len(self.units) and self.units[self.next] in results:
            res = results[self.units[self.next]]
            self.next += 1
            try:
                for split in ("train", "test"):
                    for s in res.shards.get(split, []):
                        if split not in self.splits:
                            self.splits[split] = SplitCompactor(
                                self.output,
                                self.folder,
                                split,
                                self.schema,
                                max_rows=self.sizes["max_rows"],
                                max_bytes=self.sizes["max_bytes"],
                                row_group_rows=self.sizes["row_group_rows"],
                                ahead=self._ahead,
                            )
                        self.splits[split].add(s)
                        self.fed.setdefault(split, []).append(s["path"])
            except (DamagedUnitShard, OSError):
                self.failed = True  # the commit's pass finds it again and says what to do
                self.close()

    def _ahead(self) -> frozenset[str]:
        """The names the units not yet merged may bring."""
        return self.names_from[self.next]

    def close(self) -> None:
        """Remove any shard file streamed but not finished (the build stopped, or the commit's
        own pass will merge)."""
        for merged in self.splits.values():
            merged.out.abandon()

    def take(self, split: str, shards: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        if self.failed or self.fed.get(split, []) != [s["path"] for s in shards]:
            return None
        merged = self.splits.get(split)
        return merged.finish() if merged is not None else []


def compact_manifest(
    output: Output,
    folder: str,
    manifest: dict[str, Any],
    schema: ShardSchema,
    *,
    max_rows: int,
    max_bytes: int,
    row_group_rows: int,
    keep: dict[str, np.ndarray] | None = None,
    streamed: Streaming | None = None,
) -> list[str]:
    """Every split of the manifest compacted in place; returns the unit shards merged away (to
    remove once the manifest that no longer lists them is written). `streamed`: what was merged
    while the build ran, used where it merged exactly this split's unit shards."""
    replaced: list[str] = []
    for split, info in manifest["splits"].items():
        before = info["shards"]
        done = streamed.take(split, before) if streamed is not None and keep is None else None
        if done is not None:
            info["shards"] = done
            replaced += [s["path"] for s in before]
            continue
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
                keep=keep,
            )
        except FileNotFoundError:
            # A unit shard the store lost: left as listed, so the build's check of every listed
            # shard names the lost ones and fails before any manifest.
            continue
        if info["shards"] is not before:
            replaced += [s["path"] for s in before]
    return replaced

"""How shards are encoded (one function for unit and merged shards) and the numpy views over
Arrow columns that the build reads them back with."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shardprep.store.columns import flat_lists, int32_lists, numeric_array, numpy_view
from shardprep.store.ownership import OWNER_NAME
from shardprep.store.shards import RowGroupStream, _leaf_paths, place_shard, write_parquet
from shardprep.store.storage import SCRATCH_DIR, Output, sha256_file


def _table() -> pa.Table:
    rng = np.random.default_rng(0)
    chunks = [rng.integers(0, 150_000, n).astype(np.int32) for n in rng.integers(1, 300, 200)]
    ids = int32_lists(chunks)
    flat = np.concatenate(chunks)
    weights = flat_lists((flat % 2).astype(np.float32), numpy_view(ids.offsets), pa.float32())
    return pa.table(
        {
            "input_ids": ids,
            "weights": weights,
            "length": numeric_array(np.array([len(c) for c in chunks]), pa.int32()),
            "source": pa.DictionaryArray.from_arrays(
                numeric_array(np.zeros(200, np.int32), pa.int32()), pa.array(["s"])
            ),
            "tags": pa.array([["a", "b"]] * 200, type=pa.list_(pa.string())),  # passthrough
            "meta": pa.array([{"k": i} for i in range(200)]),
        }
    )


def test_token_lists_are_plain_and_without_statistics_other_columns_keep_both(
    tmp_path: Path,
) -> None:
    table = _table()
    write_parquet(table, str(tmp_path / "s.parquet"), 64)
    pf = pq.ParquetFile(tmp_path / "s.parquet")
    assert pf.metadata.num_row_groups == 4 and pf.read().equals(table)
    rg = pf.metadata.row_group(0)
    cols = {rg.column(i).path_in_schema: rg.column(i) for i in range(rg.num_columns)}
    for path in ("input_ids.list.element", "weights.list.element"):
        assert cols[path].compression == "ZSTD"
        assert not any("DICTIONARY" in e for e in cols[path].encodings), path
        assert cols[path].statistics is None, path
    for path in ("length", "source", "tags.list.element", "meta.k"):
        assert cols[path].compression == "ZSTD"
        assert any("DICTIONARY" in e for e in cols[path].encodings), path
        assert cols[path].statistics is not None and cols[path].statistics.has_min_max, path


def test_leaf_paths_are_parquets_own() -> None:
    schema = pa.schema(
        [
            ("a", pa.list_(pa.int32())),
            ("b", pa.list_(pa.string())),
            ("c", pa.struct([("x", pa.int64()), ("y", pa.list_(pa.float64()))])),
            ("d", pa.map_(pa.string(), pa.int32())),
            ("e", pa.dictionary(pa.int32(), pa.string())),
            ("f", pa.large_list(pa.int64())),
        ]
    )
    sink = pa.BufferOutputStream()
    pq.write_table(schema.empty_table(), sink)
    written = pq.ParquetFile(pa.BufferReader(sink.getvalue())).schema
    assert [p for f in schema for p in _leaf_paths(f.name, f.type)] == [
        written.column(i).path for i in range(len(written))
    ]


def test_place_shard_reports_the_placed_files_size_and_hash(tmp_path: Path) -> None:
    out = Output(str(tmp_path / "out"))
    size, digest = place_shard(out, _table(), "data/x-0000.parquet", 1024)
    placed = tmp_path / "out" / "data" / "x-0000.parquet"
    assert size == placed.stat().st_size and digest == sha256_file(str(placed))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [SCRATCH_DIR, "data"]
    assert os.listdir(tmp_path / "out" / SCRATCH_DIR) == [OWNER_NAME]  # no scratch left


def test_numpy_view_shares_memory_and_honours_slices() -> None:
    arr = numeric_array(np.arange(10, dtype=np.int64), pa.int64())
    view = numpy_view(arr.slice(3, 4))
    assert view.tolist() == [3, 4, 5, 6] and view.dtype == np.int64
    assert np.shares_memory(view, numpy_view(arr))
    lists = flat_lists(np.arange(6, dtype=np.float32), np.array([0, 2, 6]), pa.float32())
    assert numpy_view(lists.slice(1).offsets).tolist() == [2, 6]
    assert numpy_view(pa.array([], type=pa.float32())).tolist() == []


def test_numpy_view_refuses_what_it_would_misread() -> None:
    with pytest.raises(ValueError, match="1 nulls"):
        numpy_view(pa.array([1, None, 3], type=pa.int32()))
    with pytest.raises(TypeError, match="bool"):
        numpy_view(pa.array([True, False]))


def _sourced(names: list[str], seed: int) -> pa.Table:
    """_table's columns with `source` over the sorted distinct `names` (as a unit writes it)."""
    table = _table().slice(0, len(names))
    dictionary = sorted(set(names))
    indices = np.array([dictionary.index(n) for n in names], dtype=np.int32)
    source = pa.DictionaryArray.from_arrays(
        numeric_array(indices, pa.int32()), pa.array(dictionary)
    )
    return table.set_column(table.schema.get_field_index("source"), "source", source)


@pytest.mark.parametrize("seed", range(6))
def test_a_streamed_shard_is_write_parquets_file(tmp_path: Path, seed: int) -> None:
    """Parts with different dictionaries, of any sizes, handed to RowGroupStream with the whole
    table's unified dictionary: the placed file is byte for byte write_parquet's of the whole
    table (row groups cut across parts, a last partial group, several drains)."""
    rng = np.random.default_rng(seed)
    names = ["alpaca", "glaive", "b", "zz"]
    parts = []
    for _ in range(int(rng.integers(1, 9))):
        n = int(rng.integers(1, 60))
        picked = list(rng.choice(names[: int(rng.integers(1, 5))], n))
        parts.append(_sourced([str(x) for x in picked], seed))
    group = int(rng.integers(1, 50))
    whole = pa.concat_tables(parts).unify_dictionaries().combine_chunks()
    write_parquet(whole, str(tmp_path / "whole.parquet"), group)
    out = Output(str(tmp_path / "out"))
    stream = RowGroupStream(
        out,
        "d/x.parquet",
        parts[0].schema,
        group,
        dictionary=whole.column("source").chunk(0).dictionary,
    )
    for p in parts:
        stream.write(p)
    size, digest = stream.close()
    placed = tmp_path / "out" / "d" / "x.parquet"
    assert placed.read_bytes() == (tmp_path / "whole.parquet").read_bytes()
    assert (size, digest) == (placed.stat().st_size, sha256_file(str(placed)))
    assert os.listdir(tmp_path / "out" / SCRATCH_DIR) == [OWNER_NAME]  # no scratch left


def test_an_abandoned_stream_leaves_nothing(tmp_path: Path) -> None:
    out = Output(str(tmp_path / "out"))
    part = _sourced(["a"] * 50, 0)
    stream = RowGroupStream(out, "d/x.parquet", part.schema, 8, dictionary=pa.array(["a"]))
    stream.write(part)
    stream.abandon()
    assert not (tmp_path / "out" / "d").exists()
    assert os.listdir(tmp_path / "out" / SCRATCH_DIR) == [OWNER_NAME]

"""ShardDataset: every row equals the row written, validation, pickling, fsspec URLs."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest

from shardprep.errors import ManifestError, ShardprepError
from shardprep.torch import ShardDataset


def written_rows(build: Path, split: str) -> list[dict]:
    manifest = json.loads((build / "manifest.json").read_text())
    rows: list[dict] = []
    for shard in manifest["splits"][split]["shards"]:
        rows.extend(pq.read_table(build / shard["path"]).to_pylist())
    return rows


def assert_row_equal(got: dict, want: dict) -> None:
    for key, value in want.items():
        if isinstance(value, list):
            arr = got[key]
            assert isinstance(arr, np.ndarray), key
            assert arr.tolist() == value, key
        else:
            assert got[key] == value, key


@pytest.mark.parametrize("split", ["train", "test"])
def test_every_row_equals_the_row_written(demo_shards: Path, cache_dir: str, split: str) -> None:
    ds = ShardDataset(str(demo_shards), split, cache_dir=cache_dir)
    want = written_rows(demo_shards, split)
    assert len(ds) == len(want)
    for i, row in enumerate(want):
        got = ds[i]
        assert got["index"] == i
        assert_row_equal(got, row)
    assert ds.lengths.tolist() == [r["length"] for r in want]
    assert_row_equal(ds[-1], want[-1])
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_random_access_returns_views_not_copies(demo_shards: Path, cache_dir: str) -> None:
    ds = ShardDataset(str(demo_shards), cache_dir=cache_dir)
    row = ds[123]
    assert row["input_ids"].dtype == np.int32 and row["weights"].dtype == np.float32
    assert row["input_ids"].base is not None  # a slice of the shard's mapped column


def test_pickle_is_small_and_reopens_lazily(demo_shards: Path, cache_dir: str) -> None:
    ds = ShardDataset(str(demo_shards), cache_dir=cache_dir)
    ds[0]
    blob = pickle.dumps(ds)
    assert len(blob) < 4096
    copy = pickle.loads(blob)
    assert copy._flat == {}
    assert_row_equal(
        copy[5], {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in ds[5].items()}
    )


def test_verify_hashes_and_validation(demo_shards: Path, tmp_path: Path, cache_dir: str) -> None:
    work = tmp_path / "copy"
    shutil.copytree(demo_shards, work)
    ShardDataset(str(work), verify_hashes=True, cache_dir=cache_dir)
    manifest = json.loads((work / "manifest.json").read_text())

    with pytest.raises(ShardprepError, match="split 'valid' not in"):
        ShardDataset(str(work), "valid", cache_dir=cache_dir)

    shard = work / manifest["splits"]["train"]["shards"][0]["path"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the pages: the footer still reads, only the hash can tell
    shard.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="sha256"):
        ShardDataset(str(work), verify_hashes=True, cache_dir=cache_dir)

    bad = json.loads(json.dumps(manifest))
    bad["splits"]["train"]["shards"][1]["rows"] += 1
    bad["splits"]["train"]["rows"] += 1
    (work / "manifest.json").write_text(json.dumps(bad))
    with pytest.raises(ManifestError, match="rows"):
        ShardDataset(str(work), cache_dir=cache_dir)

    bad = json.loads(json.dumps(manifest))
    bad["splits"]["train"]["shards"][0]["path"] = "../elsewhere/train-00000.parquet"
    (work / "manifest.json").write_text(json.dumps(bad))
    with pytest.raises(ManifestError, match="leaves the shard directory"):
        ShardDataset(str(work), cache_dir=cache_dir)

    bad = dict(manifest, format_version=99)
    (work / "manifest.json").write_text(json.dumps(bad))
    with pytest.raises(ManifestError, match="format_version"):
        ShardDataset(str(work), cache_dir=cache_dir)

    bad = dict(manifest, schema="rm/7")
    (work / "manifest.json").write_text(json.dumps(bad))
    with pytest.raises(ManifestError, match="schema"):
        ShardDataset(str(work), cache_dir=cache_dir)

    (work / "manifest.json").unlink()
    with pytest.raises(ManifestError, match="not a finished build"):
        ShardDataset(str(work), cache_dir=cache_dir)


def test_reads_through_fsspec_url_into_local_cache(demo_shards: Path, tmp_path: Path) -> None:
    # memory:// stands in for s3:// and gs:// (same fsspec path: not local, so shards are fetched
    # whole into the cache and decoded there) until the loopback object-store servers exist.
    fs = fsspec.filesystem("memory")
    fs.put(str(demo_shards), "/reader-demo", recursive=True)
    try:
        cache = str(tmp_path / "cache")
        ds = ShardDataset("memory://reader-demo", "test", cache_dir=cache, verify_hashes=True)
        want = written_rows(demo_shards, "test")
        for i, row in enumerate(want):
            assert_row_equal(ds[i], row)
        assert ds.lengths.tolist() == [r["length"] for r in want]
        assert not list((Path(cache) / ".work").iterdir())  # no leftover downloads
    finally:
        fs.rm("/reader-demo", recursive=True)


def test_rl_prompt_rows_read_back_with_typed_passthrough(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from shardprep.build.run import build
    from shardprep.recipe import load_recipe

    recipe, base = load_recipe(Path(__file__).parents[2] / "configs" / "rl-prompts-llama3.yaml")
    recipe = recipe.model_copy(update={"output": str(tmp_path / "rl")})
    m = build(recipe, base).manifest
    ds = ShardDataset(str(tmp_path / "rl"), cache_dir=str(tmp_path / "cache"))
    assert ds.schema == "rl_prompts/1" and len(ds) == m["splits"]["train"]["rows"]
    written = [
        r
        for s in m["splits"]["train"]["shards"]
        for r in pq.read_table(tmp_path / "rl" / s["path"]).to_pylist()
    ]
    for i in (0, len(ds) // 2, len(ds) - 1):
        row = ds[i]
        assert row["prompt_ids"].tolist() == written[i]["prompt_ids"]
        assert (row["answer"], row["instruction"], row["source_row"]) == (
            written[i]["answer"],
            written[i]["instruction"],
            written[i]["source_row"],
        )
    assert ds.lengths.tolist() == [r["length"] for r in written]


def test_lengths_refuse_a_shard_whose_bytes_differ_from_the_manifest(
    demo_shards: Path, tmp_path: Path
) -> None:
    # Same rows, same columns, only the lengths changed: footers agree with the manifest, so only
    # the sha256 can tell. `lengths` (what a token-budget sampler batches by) must not serve them.
    import pyarrow.compute as pc

    work = tmp_path / "copy"
    shutil.copytree(demo_shards, work)
    manifest = json.loads((work / "manifest.json").read_text())
    shard = work / manifest["splits"]["train"]["shards"][0]["path"]
    table = pq.read_table(shard)
    i = table.schema.get_field_index("length")
    table = table.set_column(i, "length", pc.add(table.column("length"), 7))
    pq.write_table(table, shard)
    ds = ShardDataset(str(work), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ManifestError, match="sha256"):
        _ = ds.lengths

"""Item 2: the torch reader never serves a damaged shard or a damaged cache entry.

A shard is checked against the manifest's sha256 when it enters the decoded cache; every cache file
carries its size and CRC-32, written last, and a damaged entry is rebuilt from the shard."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("torch")

from shardprep.build.run import build  # noqa: E402
from shardprep.errors import ManifestError  # noqa: E402
from shardprep.recipe import load_recipe  # noqa: E402
from shardprep.torch import ShardDataset  # noqa: E402
from shardprep.torch.cache import shard_cache_path  # noqa: E402

from ._project import jsonl_bytes, write_recipe  # noqa: E402

ROWS = 300


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("reader-faults")
    (folder / "rows.jsonl").write_bytes(jsonl_bytes(ROWS))
    recipe, base = load_recipe(
        write_recipe(folder, "rows.jsonl", shards={"max_rows": 100}, work_unit_rows=150)
    )
    build(recipe, base)
    return folder / "out"


@pytest.fixture
def shards(pristine: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(pristine, out)
    return out


def _manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "manifest.json").read_text())


def _rows(ds: ShardDataset) -> list[list[int]]:
    return [ds[i]["input_ids"].tolist() for i in range(len(ds))]


def _expected(out: Path) -> list[list[int]]:
    m = _manifest(out)
    return [
        r
        for s in m["splits"]["train"]["shards"]
        for r in pq.read_table(out / s["path"]).column("input_ids").to_pylist()
    ]


def _flip(path: Path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    i = int(len(data) * at)
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def test_flipped_byte_in_a_shard_is_refused(shards: Path, tmp_path: Path, faults) -> None:
    m = _manifest(shards)
    victim = m["splits"]["train"]["shards"][1]
    cache = str(tmp_path / "cache")
    ds = ShardDataset(str(shards), cache_dir=cache)
    _flip(shards / victim["path"], 0.3)
    faults.fault()
    with pytest.raises(ManifestError, match=f"{victim['path']}: sha256 differs"):
        for i in range(len(ds)):
            ds[i]
    assert not os.path.exists(shard_cache_path(cache, victim["sha256"]))


def test_rewritten_shard_is_refused(shards: Path, tmp_path: Path, faults) -> None:
    victim = _manifest(shards)["splits"]["train"]["shards"][0]
    table = pq.read_table(shards / victim["path"])
    pq.write_table(
        table.take(np.arange(table.num_rows)[::-1]), shards / victim["path"]
    )  # same rows, other order
    faults.fault()
    ds = ShardDataset(str(shards), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ManifestError, match="sha256 differs"):
        ds[0]


def test_tampered_then_restored_shard_is_served_right(shards: Path, tmp_path: Path, faults) -> None:
    victim = shards / _manifest(shards)["splits"]["train"]["shards"][0]["path"]
    good = victim.read_bytes()
    expected = _expected(shards)
    cache = str(tmp_path / "cache")
    table = pq.read_table(victim)
    pq.write_table(table.take(np.arange(table.num_rows)[::-1]), victim)
    faults.fault()
    with pytest.raises(ManifestError):
        ShardDataset(str(shards), cache_dir=cache)[0]
    victim.write_bytes(good)
    assert _rows(ShardDataset(str(shards), cache_dir=cache)) == expected


def _entry_files(cache: str, sha: str) -> Path:
    return Path(shard_cache_path(cache, sha))


DAMAGE = {
    "values_byte": lambda e: _flip(e / "input_ids.values"),
    "offsets_byte": lambda e: _flip(e / "input_ids.offsets", 0.9),
    "weights_byte": lambda e: _flip(e / "weights.values", 0.2),
    "codes_byte": lambda e: _flip(e / "source.codes", 0.5),
    "values_truncated": lambda e: (e / "input_ids.values").write_bytes(
        (e / "input_ids.values").read_bytes()[:-8]
    ),
    "values_missing": lambda e: (e / "input_ids.values").unlink(),
    "meta_torn": lambda e: (e / "meta.json").write_text((e / "meta.json").read_text()[:40]),
    "meta_without_checksums": lambda e: (e / "meta.json").write_text(
        json.dumps(
            {k: v for k, v in json.loads((e / "meta.json").read_text()).items() if k != "files"}
        )
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_cache_entry_is_rebuilt_not_served(
    shards: Path, tmp_path: Path, damage: str, faults
) -> None:
    cache = str(tmp_path / "cache")
    expected = _expected(shards)
    ShardDataset(str(shards), cache_dir=cache).prepare()
    shard = _manifest(shards)["splits"]["train"]["shards"][1]
    DAMAGE[damage](_entry_files(cache, shard["sha256"]))
    faults.fault()
    ds = ShardDataset(str(shards), cache_dir=cache)
    assert _rows(ds) == expected
    # The rebuilt entry is whole again: a fresh reader loads it without rebuilding.
    assert _rows(ShardDataset(str(shards), cache_dir=cache)) == expected
    faults.rows_lost(len(expected) - len(_rows(ds)))

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
    assert not os.path.exists(ds.entry_path(1))


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
    entry = Path(ShardDataset(str(shards), cache_dir=cache).prepare().entry_path(1))
    DAMAGE[damage](entry)
    faults.fault()
    ds = ShardDataset(str(shards), cache_dir=cache)
    assert _rows(ds) == expected
    # The rebuilt entry is whole again: a fresh reader loads it without rebuilding.
    assert _rows(ShardDataset(str(shards), cache_dir=cache)) == expected
    faults.rows_lost(len(expected) - len(_rows(ds)))


# Issue 23 item 3: a cache entry is bound to the shard it was made from (its path in the build
# and its bytes), not only to the sha256 a manifest claims for it.
SWAPS = {
    # The manifest gives shard 1 the sha256 of shard 0, whose entry is warm in the cache.
    "manifest_claims_another_sha256": "manifest",
    # Shard 0's entry is renamed to where shard 1's belongs (a copied or moved cache folder).
    "entry_moved_into_another_shards_place": "entry",
}


@pytest.mark.parametrize("swap", list(SWAPS))
def test_warm_cache_never_serves_another_shards_rows(
    shards: Path, tmp_path: Path, swap: str, faults
) -> None:
    cache = str(tmp_path / "cache")
    expected = _expected(shards)
    warm = ShardDataset(str(shards), cache_dir=cache)
    warm.prepare()
    m = _manifest(shards)
    first, second = m["splits"]["train"]["shards"][:2]
    if SWAPS[swap] == "manifest":
        second["sha256"] = first["sha256"]
        (shards / "manifest.json").write_text(json.dumps(m))
    else:
        entry0, entry1 = warm.entry_path(0), warm.entry_path(1)
        warm.close()
        shutil.rmtree(entry1)
        os.rename(entry0, entry1)
    faults.fault()
    ds = ShardDataset(str(shards), cache_dir=cache)
    served: list[list[int]] = []
    if SWAPS[swap] == "manifest":
        # Shard 1's own bytes are read, found to differ from the claimed sha256, and refused.
        with pytest.raises(ManifestError, match=f"{second['path']}: sha256 differs"):
            for i in range(len(ds)):
                served.append(ds[i]["input_ids"].tolist())
        assert len(served) == first["rows"]
    else:
        # The moved entry names shard 0 as its source: discarded and rebuilt from shard 1.
        served = _rows(ds)
        assert len(served) == len(expected)
    wrong = sum(got != want for got, want in zip(served, expected, strict=False))
    faults.wrong_rows(wrong)
    assert wrong == 0


# A reader killed while it makes an entry: the kernel drops its locks, the next reader makes the
# entry itself, and the reservation and half-written files it left are swept.
KILLED_MAKER = """
import sys, time
import shardprep.torch.cache as cache
from shardprep.torch import ShardDataset
def stall(path):  # the columns are written; their checksums are next
    print("MAKING", flush=True)
    time.sleep(120)
cache._crc_file = stall
ShardDataset(sys.argv[1], cache_dir=sys.argv[2])[0]
"""


def test_reader_killed_while_making_an_entry(shards: Path, tmp_path: Path, faults) -> None:
    import signal
    import subprocess
    import sys

    cache = tmp_path / "cache"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_MAKER, str(shards), str(cache)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "MAKING"
        left = sorted(p.name for p in (cache / ".work").iterdir())
        assert len(left) == 2 and left[1].endswith(".bytes")  # its work folder and reservation
        assert any((cache / ".work" / left[0]).iterdir())  # a half-written entry
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    faults.kill_point()
    ds = ShardDataset(str(shards), cache_dir=str(cache))
    expected = _expected(shards)
    got = _rows(ds)
    faults.rows_lost(len(expected) - len(got))
    faults.wrong_rows(sum(a != b for a, b in zip(got, expected, strict=False)))
    assert got == expected
    assert not list((cache / ".work").iterdir())  # the dead reader's leftovers were swept

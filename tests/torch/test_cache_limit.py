"""The reader cache's limit: how it is given, what it refuses, least recently used eviction, the
footer's upper bound of an entry's size, and debug logging of hits, misses and evictions."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from shardprep.errors import ShardprepError
from shardprep.torch import ShardDataset
from shardprep.torch.cache import entry_bytes
from shardprep.torch.lru import DEFAULT_FRACTION, LIMIT_ENV, parse_limit, room

from .conftest import write_build
from .test_remote import sft_tables


def test_limits_are_sizes_or_fractions_of_the_disk(tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    assert parse_limit("20GB", cache_dir=cache) == 20 * 10**9
    assert parse_limit("1.5 GiB", cache_dir=cache) == int(1.5 * 2**30)
    assert parse_limit("512mib", cache_dir=cache) == 512 * 2**20
    assert parse_limit(123456, cache_dir=cache) == 123456
    assert parse_limit("50%", cache_dir=cache) == pytest.approx(room(cache) / 2, rel=0.01)
    for bad in ("lots", "20 parsecs", "0", "-5GB", "150%", 0, 0.5, float("nan"), float("inf")):
        with pytest.raises(ShardprepError, match="cache_limit"):
            parse_limit(bad, cache_dir=cache)


def test_default_and_environment(
    demo_shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = str(tmp_path / "cache")
    monkeypatch.delenv(LIMIT_ENV, raising=False)
    ds = ShardDataset(str(demo_shards), cache_dir=cache)
    assert ds.cache_limit == pytest.approx(DEFAULT_FRACTION * room(cache), rel=0.01)
    monkeypatch.setenv(LIMIT_ENV, "3MB")
    assert ShardDataset(str(demo_shards), cache_dir=cache).cache_limit == 3_000_000
    # An argument wins over the environment.
    assert ShardDataset(str(demo_shards), cache_dir=cache, cache_limit="4MB").cache_limit == 4e6
    # A bad value from the environment is named as that (the user passed no cache_limit).
    monkeypatch.setenv(LIMIT_ENV, "lots")
    with pytest.raises(ShardprepError, match=rf"^\${LIMIT_ENV}: cache_limit 'lots' is not a size"):
        ShardDataset(str(demo_shards), cache_dir=cache)


def test_a_limit_smaller_than_one_shard_is_refused(demo_shards: Path, tmp_path: Path) -> None:
    with pytest.raises(ShardprepError, match="smaller than one shard's entry.*raise cache_limit"):
        ShardDataset(str(demo_shards), cache_dir=str(tmp_path / "c"), cache_limit="10KB")
    # Just below the largest entry: rounded to MB both would read the same; the bytes differ.
    fits = ShardDataset(str(demo_shards), cache_dir=str(tmp_path / "c"))
    largest = max(s["estimate"] for s in fits.shards)
    with pytest.raises(ShardprepError) as err:
        ShardDataset(str(demo_shards), cache_dir=str(tmp_path / "c"), cache_limit=largest - 1)
    assert f"limit {largest - 1:,} bytes is smaller" in str(err.value)
    assert f"(up to {largest:,} bytes)" in str(err.value)


def test_the_footer_bounds_every_entry(demo_shards: Path, tmp_path: Path) -> None:
    for split in ("train", "test"):
        ds = ShardDataset(str(demo_shards), split, cache_dir=str(tmp_path / "c")).prepare()
        for k, shard in enumerate(ds.shards):
            actual = entry_bytes(ds.entry_path(k))
            assert actual <= shard["estimate"] <= 2 * actual + 8192, (split, k)


def test_least_recently_used_is_evicted_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    build = write_build(tmp_path / "b", "sft/1", sft_tables(3, 40))
    probe = ShardDataset(str(build), cache_dir=str(tmp_path / "probe")).prepare()
    size = max(entry_bytes(probe.entry_path(k)) for k in range(3))
    # Room for two entries and a third being made, not for three entries and a fourth.
    limit = size + max(s["estimate"] for s in probe.shards) + size // 2
    ds = ShardDataset(str(build), cache_dir=str(tmp_path / "c"), cache_limit=limit)
    assert len(ds.shards) == 3
    caplog.set_level(logging.DEBUG, logger="shardprep.reader")
    ds.fetch(0)
    ds.fetch(1)
    ds[0]  # shard 0 is now the more recently used
    ds.close()
    ds.fetch(2)
    assert os.path.exists(ds.entry_path(0)) and os.path.exists(ds.entry_path(2))
    assert not os.path.exists(ds.entry_path(1))
    assert ds.cache().evictions == 1
    text = caplog.text
    assert "reader cache: hit" in text and "reader cache: evicted" in text
    ds[len(ds) - 1]
    assert "reader cache: hit" in caplog.text
    ds[int(ds.shard_starts[1])]  # shard 1 again: made again
    assert "reader cache: miss data-" in caplog.text
    assert ds.stats.made == 4


def test_entries_of_older_cache_versions_are_removed(demo_shards: Path, tmp_path: Path) -> None:
    cache = tmp_path / "c"
    old = cache / ("v2-" + "ab" * 32)
    old.mkdir(parents=True)
    (old / "meta.json").write_text('{"version": 2, "rows": 3}')
    (old / "input_ids.values").write_bytes(b"x" * 1000)
    mine = cache / "v2-notes"  # not an entry (no hex name): kept
    mine.mkdir()
    (mine / "meta.json").write_text('{"version": 2}')
    ShardDataset(str(demo_shards), cache_dir=str(cache))[0]
    assert not old.exists() and mine.exists()


def test_open_maps_are_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shardprep.torch.dataset as dataset_module

    monkeypatch.setattr(dataset_module, "MAX_OPEN_SHARDS", 2)
    build = write_build(tmp_path / "b", "sft/1", sft_tables(6, 5))
    ds = ShardDataset(str(build), cache_dir=str(tmp_path / "c"))
    order = [0, 29, 7, 14, 3, 22, 11, 27, 0, 18]  # every shard, back and forth
    rows = [ds[i]["source_row"] for i in order]
    assert rows == order and len(ds._flat) == 2
    assert ds.stats.made == 6  # reopened from the cache, never made again


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (writes fail ENOSPC)")
def test_a_full_disk_while_decoding_names_the_entry(
    demo_shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each column file of the entry being made is a link to /dev/full: the kernel's ENOSPC,
    whose error names no file, reaches the reader naming the cache entry it was writing."""
    from shardprep.torch import cache as cache_mod

    made = cache_mod._ColumnWriter.__init__

    def on_full_disk(self: object, folder: str, name: str, t: object) -> None:
        for suffix in ("values", "bin", "codes"):
            os.symlink("/dev/full", os.path.join(folder, f"{name}.{suffix}"))
        made(self, folder, name, t)  # type: ignore[arg-type]

    monkeypatch.setattr(cache_mod._ColumnWriter, "__init__", on_full_disk)
    cache = tmp_path / "cache"
    ds = ShardDataset(str(demo_shards), cache_dir=str(cache))
    with pytest.raises(OSError, match="No space left on device") as err:
        ds[0]
    assert err.value.filename and str(err.value.filename).startswith(str(cache)), err.value
    assert os.path.exists("/dev/full")  # the links went with the entry, never the device
    assert not [p for p in cache.rglob("*") if p.name.startswith(".tmp-")]


def test_workers_short_of_room_never_lose_the_entry_they_just_made(tmp_path: Path) -> None:
    """Two DataLoader workers reading packs (rows from every shard) through a cache of four
    shards: each keeps entries open, so often the only entry not in use is the one the other just
    made. It was opened only after it appeared, so it was evicted first, again and again: 'its
    reader cache entry kept disappearing' in most runs. It is now pinned before it appears."""
    from shardprep.torch import PackedLoader

    build = write_build(tmp_path / "b", "sft/1", sft_tables(40, 24))
    whole = ShardDataset(str(build), cache_dir=str(tmp_path / "whole"))
    four = 4 * max(s["estimate"] for s in whole.shards)
    small = ShardDataset(str(build), cache_dir=str(tmp_path / "small"), cache_limit=four)
    loader = PackedLoader(small, seq_len=256, batch_size=4, num_workers=2)
    reference = PackedLoader(whole, seq_len=256, batch_size=4)
    for _ in range(2):  # two epochs: most single epochs lost the race before
        got = [b["input_ids"] for b in loader]
        expected = [b["input_ids"] for b in reference]
        assert len(got) == len(expected) == len(loader)
        assert all(bool((x == y).all()) for x, y in zip(got, expected, strict=True))

"""One size syntax for every size a user writes: a recipe's max_bytes and the reader's cache_limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from shardprep.errors import ShardprepError
from shardprep.recipe import ShardSpec
from shardprep.sizes import human_bytes, parse_size
from shardprep.torch.lru import parse_limit


@pytest.mark.parametrize(
    ("text", "nbytes"),
    [
        ("256MB", 256 * 10**6),
        ("256M", 256 * 10**6),
        ("256MiB", 256 * 2**20),
        ("256mi", 256 * 2**20),
        ("1.5 GB", 1_500_000_000),
        ("2 tib", 2 * 2**40),
        ("4096", 4096),
        ("12B", 12),
        ("3.", 3),
    ],
)
def test_every_size_setting_reads_the_same(text: str, nbytes: int, tmp_path: Path) -> None:
    assert parse_size(text) == nbytes
    assert parse_limit(text, cache_dir=str(tmp_path)) == nbytes
    if nbytes >= 1024:  # the recipe's own lower bound
        assert ShardSpec(max_bytes=text).max_bytes == nbytes


@pytest.mark.parametrize("text", ["big", "1.2.3", "-5GB", "MB", "", "5 parsecs", "5 KBB"])
def test_what_is_not_a_size_is_refused_by_every_setting(text: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        parse_size(text)
    with pytest.raises(ShardprepError, match="not a size"):
        parse_limit(text, cache_dir=str(tmp_path))


def test_sizes_print_in_decimal_units() -> None:
    assert [human_bytes(n) for n in (999, 1000, 1_234_567, 5 * 10**12, 10**16)] == [
        "999 bytes",
        "1.0 KB",
        "1.2 MB",
        "5.0 TB",
        "10000.0 TB",
    ]

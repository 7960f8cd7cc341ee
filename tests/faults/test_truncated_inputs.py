"""Item 3: a compressed input cut short (at a block boundary, mid-line, before its trailer) stops
the build with the file named, for every codec; it never becomes a silently shorter build."""

from __future__ import annotations

import bz2
import gzip
import lzma
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from shardprep.errors import SourceError
from shardprep.sources.files import count_rows, iter_source_rows

from ._project import jsonl_bytes, prep, write_recipe

ROWS = 3000
DATA = jsonl_bytes(ROWS)


def _zstd(data: bytes) -> bytes:
    # No content size and no checksum in the header: nothing but the frame end marks the file end.
    return zstandard.ZstdCompressor(level=3, write_content_size=False).compress(data)


CODECS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "gzip": (".gz", gzip.compress),
    "bz2": (".bz2", bz2.compress),
    "xz": (".xz", lzma.compress),
    "zstd": (".zst", _zstd),
}


def zstd_block_ends(frame: bytes) -> list[int]:
    """Byte offsets right after each block of a zstd frame (RFC 8878, section 3.1.1)."""
    fhd = frame[4]
    did = (0, 1, 2, 4)[fhd & 3]
    single = (fhd >> 5) & 1
    fcs = (0 if not single else 1, 2, 4, 8)[fhd >> 6]
    pos = 5 + (0 if single else 1) + did + fcs
    ends = []
    while True:
        header = int.from_bytes(frame[pos : pos + 3], "little")
        last, kind, size = header & 1, (header >> 1) & 3, header >> 3
        pos += 3 + (1 if kind == 1 else size)
        ends.append(pos)
        if last:
            return ends


def cuts(codec: str, blob: bytes) -> dict[str, int]:
    """Where to cut: at a block boundary (zstd), in the middle, and just before the trailer."""
    out = {"middle": len(blob) // 2, "before_trailer": len(blob) - 4}
    if codec == "zstd":
        ends = zstd_block_ends(blob)
        assert len(ends) > 2, "the sample must span several blocks"
        out["block_boundary"] = ends[len(ends) // 2]
    return out


CASES = [
    (codec, cut)
    for codec in CODECS
    for cut in ("middle", "before_trailer", "block_boundary")
    if cut != "block_boundary" or codec == "zstd"
]


@pytest.mark.parametrize(("codec", "cut"), CASES)
def test_reader_refuses_a_cut_file(tmp_path: Path, codec: str, cut: str, faults) -> None:
    suffix, compress = CODECS[codec]
    blob = compress(DATA)
    path = tmp_path / f"rows.jsonl{suffix}"
    path.write_bytes(blob[: cuts(codec, blob)[cut]])
    faults.fault()
    with pytest.raises(SourceError, match=r"rows\.jsonl") as err:
        count_rows(str(path))
    assert "truncated" in str(err.value) or "damaged" in str(err.value)
    with pytest.raises(SourceError, match=r"rows\.jsonl"):
        for _ in iter_source_rows(str(path)):
            pass


@pytest.mark.parametrize("codec", list(CODECS))
def test_whole_files_read_completely(tmp_path: Path, codec: str) -> None:
    suffix, compress = CODECS[codec]
    path = tmp_path / f"rows.jsonl{suffix}"
    path.write_bytes(compress(DATA))
    assert count_rows(str(path)) == ROWS
    assert sum(1 for _ in iter_source_rows(str(path))) == ROWS


def test_zstd_frames_concatenated_read_completely(tmp_path: Path) -> None:
    # `zstd a b > c` and pzstd write one frame after another; every frame is part of the file.
    path = tmp_path / "rows.jsonl.zst"
    path.write_bytes(_zstd(jsonl_bytes(1000)) + _zstd(jsonl_bytes(1000, start=1000)))
    rows = list(iter_source_rows(str(path)))
    assert len(rows) == count_rows(str(path)) == 2000
    assert rows[-1].data is not None and rows[-1].data["messages"][0]["content"].startswith(
        "Question 1999"
    )


def test_zstd_cut_after_a_whole_frame_of_two_is_refused(tmp_path: Path, faults) -> None:
    first, second = _zstd(jsonl_bytes(1000)), _zstd(jsonl_bytes(1000, start=1000))
    path = tmp_path / "rows.jsonl.zst"
    path.write_bytes(first + second[: len(second) // 2])
    faults.fault()
    with pytest.raises(SourceError, match="truncated"):
        count_rows(str(path))


@pytest.mark.parametrize("on_error", ["fail", "skip"])
@pytest.mark.parametrize("cut", ["block_boundary", "middle"])
def test_build_stops_naming_the_file(tmp_path: Path, on_error: str, cut: str, faults) -> None:
    blob = _zstd(DATA)
    (tmp_path / "rows.jsonl.zst").write_bytes(blob[: cuts("zstd", blob)[cut]])
    recipe = write_recipe(tmp_path, "rows.jsonl.zst", on_error=on_error)
    faults.fault()
    code, out = prep("build", str(recipe), "--quiet")
    assert code == 2, out
    assert "rows.jsonl.zst" in out and "truncated" in out
    assert "internal error" not in out
    assert not (tmp_path / "out" / "manifest.json").exists()

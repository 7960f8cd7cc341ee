"""A plain local file is expanded and identified with `os`; the answers are fsspec's own (the
`protocol` option sends the same call through fsspec's LocalFileSystem), so fingerprints keep."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shardprep.errors import SourceError
from shardprep.sources.paths import expand_paths, file_identity

THROUGH_FSSPEC = {"protocol": "file"}


def _files(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.jsonl").write_text("{}\n{}\n", encoding="utf-8")
    (data / "link.jsonl").symlink_to(data / "a.jsonl")
    (data / "dangling.jsonl").symlink_to(data / "gone.jsonl")
    os.utime(data / "a.jsonl", (1_700_000_000.25, 1_700_000_000.25))
    return data


@pytest.mark.parametrize("name", ["a.jsonl", "link.jsonl", "./a.jsonl", "../data/a.jsonl"])
def test_expand_paths_as_fsspec(tmp_path: Path, name: str) -> None:
    data = _files(tmp_path)
    mine = expand_paths(name, base_dir=data)
    assert mine == expand_paths(name, base_dir=data, storage_options=THROUGH_FSSPEC)
    assert mine == expand_paths(f"file://{data}/{name}", storage_options=THROUGH_FSSPEC)


def test_expand_paths_refusals_as_fsspec(tmp_path: Path) -> None:
    data = _files(tmp_path)
    refused = (("missing.jsonl", "no such file"), ("dangling.jsonl", "no such file"))
    for name, message in (*refused, (".", "is a folder")):
        for opts in (None, THROUGH_FSSPEC):
            with pytest.raises(SourceError, match=message):
                expand_paths(name, base_dir=data, storage_options=opts)


@pytest.mark.parametrize("name", ["a.jsonl", "link.jsonl"])
def test_file_identity_as_fsspec(tmp_path: Path, name: str) -> None:
    url = str(_files(tmp_path) / name)
    ident = file_identity(url)
    assert ident == file_identity(url, THROUGH_FSSPEC)
    assert ident == {"uri": url, "size": 6, "mtime": 1_700_000_000.25}


def test_file_identity_refusals_as_fsspec(tmp_path: Path) -> None:
    data = _files(tmp_path)
    for name in ("missing.jsonl", "dangling.jsonl"):
        for opts in (None, THROUGH_FSSPEC):
            with pytest.raises(SourceError, match="no such file"):
                file_identity(str(data / name), opts)

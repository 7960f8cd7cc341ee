"""Output: a local folder is answered with `os` exactly as fsspec's LocalFileSystem would answer it
(fsspec loads only for other filesystems or the first use of `Output.fs`)."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest

from shardprep.store.storage import Output, local_path, protocol

LOCAL = ["out", "./out", ".", "", "/abs/x/", "/", "file:///abs/y", "file://rel", "local://q/"]
LOCAL += ["~/x", "~", "a/../b", "out [1]/x"]
# Left to fsspec: other protocols, chains, and a ":" fsspec may read as a protocol.
OTHER = ["s3://b/k", "memory://x", "simplecache::file:///x", "data:x", "file:x", "c:/x"]


@pytest.mark.parametrize("url", LOCAL)
def test_local_path_is_fsspecs(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fs, root = fsspec.core.url_to_fs(url)
    assert type(fs).__name__ == "LocalFileSystem"
    assert local_path(url) == root
    out = Output(url)
    assert out.is_local and out.root == root.rstrip("/")
    assert "fs" not in out.__dict__  # not made until used


@pytest.mark.parametrize("url", OTHER)
def test_other_urls_are_left_to_fsspec(url: str) -> None:
    assert local_path(url) is None
    assert protocol(url) == fsspec.utils.get_protocol(url)


def test_a_protocol_option_is_left_to_fsspec() -> None:
    assert local_path("out", {"protocol": "memory"}) is None
    assert Output("out", storage_options={"protocol": "memory"}).is_local is False


def test_local_output_answers_as_fsspec(tmp_path: Path) -> None:
    out = Output(str(tmp_path))
    fs = fsspec.filesystem("file")
    (tmp_path / "a.json").write_text('{"x": 1}\n', encoding="utf-8")
    (tmp_path / "d").mkdir()
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    for rel in ("a.json", "d", "dangling", "missing", ""):
        assert out.exists(rel) == fs.exists(out.path(rel)), rel
    assert out.listdir() == sorted(Path(p).name for p in fs.ls(out.root, detail=False))
    assert out.listdir() == ["a.json", "d", "dangling"]
    assert out.listdir("a.json") == ["a.json"] and out.listdir("missing") == []
    assert out.read_text("a.json") == fs.read_text(out.path("a.json"), encoding="utf-8")
    out.makedirs("x/y")
    assert (tmp_path / "x" / "y").is_dir()
    assert type(out.fs).__name__ == "LocalFileSystem"  # still there for what needs it


def test_remote_output_goes_through_fsspec() -> None:
    out = Output("memory://shardprep-storage-test/out")
    try:
        assert not out.is_local and out.root == "/shardprep-storage-test/out"
        out.write_text_atomic("m.json", "{}")
        assert out.exists("m.json") and out.read_text("m.json") == "{}"
        assert out.listdir() == ["m.json"]
    finally:
        out.remove_tree("")

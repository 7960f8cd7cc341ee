from __future__ import annotations

import json
from pathlib import Path

import pytest

from shardprep.errors import ManifestError
from shardprep.store.manifest import fingerprint, read_manifest
from shardprep.store.storage import Output


def _write(tmp_path: Path, manifest: dict) -> Output:
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return Output(str(tmp_path))


def _manifest(path: str, version: int = 1) -> dict:
    return {
        "format": "shardprep",
        "format_version": version,
        "splits": {"train": {"shards": [{"path": path}]}},
    }


@pytest.mark.parametrize(
    "bad", ["../elsewhere/x.parquet", "/etc/passwd", "s3://bucket/x.parquet", "data/../../x"]
)
def test_shard_paths_must_stay_inside(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ManifestError, match="leaves the shard directory"):
        read_manifest(_write(tmp_path, _manifest(bad)))


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="upgrade shardprep"):
        read_manifest(_write(tmp_path, _manifest("data-x/train-00000.parquet", version=99)))


def test_not_a_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not a shardprep manifest"):
        read_manifest(_write(tmp_path, {"hello": 1}))
    (tmp_path / "manifest.json").write_text("{trunc")
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(Output(str(tmp_path)))


def test_missing_manifest_means_no_build(tmp_path: Path) -> None:
    assert read_manifest(Output(str(tmp_path))) is None


def test_fingerprint_is_order_independent_and_sensitive() -> None:
    a = fingerprint({"x": 1, "y": [1, 2]})
    assert a == fingerprint({"y": [1, 2], "x": 1})
    assert a != fingerprint({"x": 1, "y": [2, 1]})

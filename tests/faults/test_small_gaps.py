"""Item 7: the smaller gaps, each a clear one-line message (exit 2) or a fix.

Empty inputs, a symlinked tokenizer.json, malformed manifests, a shard symlinked out of the
output, a split whose shards do not add up, a shard failing its hash in `prep show`, a full disk."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from shardprep.build.run import build
from shardprep.errors import ManifestError
from shardprep.recipe import load_recipe
from shardprep.store import storage
from shardprep.tokenizer import load_tokenizer
from shardprep.views.verify import verify_build

from ._project import TOY, jsonl_bytes, prep, write_recipe


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("empty.jsonl", b""),
        ("blank.jsonl", b" \n\n\t \n"),
        ("header.csv", b"prompt,completion\n"),
        ("empty.json", b"[]"),
    ],
)
def test_input_without_rows_is_an_error(tmp_path: Path, name: str, body: bytes, faults) -> None:
    (tmp_path / name).write_bytes(body)
    overrides = (
        {"sources": [{"name": "empty", "path": name, "format": "prompt_completion"}]}
        if name.endswith(".csv")
        else {}
    )
    recipe = write_recipe(tmp_path, name, **overrides)
    faults.bad_input()
    code, out = prep("build", str(recipe), "--quiet")
    assert code == 2, out
    assert "gives no rows" in out and name.split(".")[0] in out, out
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_symlinked_tokenizer_reads_the_config_beside_the_link(tmp_path: Path) -> None:
    # The HF cache layout: snapshots/<rev>/tokenizer.json -> ../../blobs/<hash>
    blobs, snap = tmp_path / "blobs", tmp_path / "snapshots" / "rev"
    blobs.mkdir()
    snap.mkdir(parents=True)
    import gzip

    (blobs / "abc123").write_bytes(gzip.decompress((TOY / "tokenizer.json.gz").read_bytes()))
    (snap / "tokenizer.json").symlink_to(Path("../../blobs/abc123"))
    config = json.loads((TOY / "tokenizer_config.json").read_text())
    config["eos_token"] = "<|marker-beside-the-link|>"
    (snap / "tokenizer_config.json").write_text(json.dumps(config))
    tok = load_tokenizer(str(snap / "tokenizer.json"))
    assert tok.config.get("eos_token") == "<|marker-beside-the-link|>"
    tok = load_tokenizer(str(snap))
    assert tok.config.get("eos_token") == "<|marker-beside-the-link|>"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gaps")
    (folder / "rows.jsonl").write_bytes(jsonl_bytes(60))
    build(*load_recipe(write_recipe(folder, str(folder / "rows.jsonl"), shards={"max_rows": 20})))
    return folder


@pytest.fixture
def out(finished: Path, tmp_path: Path) -> Path:
    shutil.copytree(finished / "out", tmp_path / "out")
    return tmp_path / "out"


def _manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "manifest.json").read_text())


MALFORMED = {
    "splits_list": lambda m: m.update(splits=[]),
    "shard_without_sha256": lambda m: m["splits"]["train"]["shards"][0].pop("sha256"),
    "rows_not_a_number": lambda m: m["splits"]["train"].update(rows="many"),
    "shard_not_a_mapping": lambda m: m["splits"]["train"]["shards"].append("x.parquet"),
    "no_fingerprint": lambda m: m.pop("fingerprint"),
}


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_malformed_manifest_is_one_line_exit_2(out: Path, kind: str, faults) -> None:
    m = _manifest(out)
    MALFORMED[kind](m)
    (out / "manifest.json").write_text(json.dumps(m))
    faults.bad_input()
    for command in ("show", "verify"):
        code, text = prep(command, str(out))
        assert code == 2, (command, text)
        assert "manifest.json" in text and "malformed" in text and "internal error" not in text, (
            text
        )


def test_shard_symlinked_outside_is_refused(out: Path, tmp_path: Path, faults) -> None:
    shard = out / _manifest(out)["splits"]["train"]["shards"][0]["path"]
    outside = tmp_path / "elsewhere.parquet"
    shutil.move(shard, outside)
    shard.symlink_to(outside)
    faults.fault()
    report = verify_build(str(out))
    assert not report.ok and "outside the output folder" in json.dumps(report.to_json())
    pytest.importorskip("torch")
    from shardprep.torch import ShardDataset

    with pytest.raises(ManifestError, match="outside"):
        ShardDataset(str(out), cache_dir=str(tmp_path / "cache"))


def test_verify_checks_each_split_total(out: Path, faults) -> None:
    m = _manifest(out)
    m["splits"]["train"]["rows"] += 1
    (out / "manifest.json").write_text(json.dumps(m))
    faults.fault()
    report = verify_build(str(out))
    assert not report.ok
    assert "shards hold 60 rows, the split says 61" in json.dumps(report.to_json())
    code, text = prep("verify", str(out))
    assert code != 0 and "61" in text


def test_show_says_when_a_shard_fails_its_hash(out: Path, faults) -> None:
    shard = out / _manifest(out)["splits"]["train"]["shards"][0]["path"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0x01  # same size: only the hash tells
    shard.write_bytes(bytes(data))
    faults.fault()
    code, text = prep("show", str(out), "--json")
    if code == 0:
        report = json.loads(text)
        assert [w for w in report["warnings"] if w["code"] == "shard_damaged"], report["warnings"]
        code, text = prep("show", str(out))
        assert "sha256 differs" in text
    else:  # the flipped byte broke the row group itself: still a clear one-line error
        assert code == 2 and "internal error" not in text, text


def test_show_refuses_a_build_with_a_missing_shard(out: Path, faults) -> None:
    (out / _manifest(out)["splits"]["train"]["shards"][1]["path"]).unlink()
    faults.fault()
    code, text = prep("show", str(out))
    assert code == 2 and "damaged" in text and "missing" in text, text


def test_disk_full_is_one_line_naming_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, faults
) -> None:
    (tmp_path / "rows.jsonl").write_bytes(jsonl_bytes(30))
    recipe = write_recipe(tmp_path, "rows.jsonl")

    def full(self: storage.Output, local_file: str, rel: str) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.path(rel))

    monkeypatch.setattr(storage.Output, "place", full)
    faults.fault()
    code, text = prep("build", str(recipe), "--quiet")
    assert code == 2, text
    assert (
        "No space left on device" in text
        and str(tmp_path / "out") in text
        and "internal error" not in text
    )

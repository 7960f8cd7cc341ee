"""Hub sources through `datasets` streaming, offline, against a local folder in Hub layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from shardprep.build.run import build
from shardprep.errors import SourceError
from shardprep.recipe import load_recipe
from shardprep.sources.hub import resolve_commit

ROOT = Path(__file__).parents[2]
QWEN3 = str(ROOT / "tests/fixtures/tokenizers/qwen3")
README = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*.parquet
  - split: test
    path: data/test-*.parquet
---
# toy chat data
"""


def _chat(i: int) -> dict[str, Any]:
    return {"prompt": f"hub question {i}", "completion": f"hub answer {i}"}


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hub") / "toy-chat"
    (root / "data").mkdir(parents=True)
    (root / "jsonl").mkdir()
    (root / "README.md").write_text(README)
    for shard, (lo, hi) in enumerate(((0, 7), (7, 12), (12, 20))):
        pq.write_table(
            pa.Table.from_pylist([_chat(i) for i in range(lo, hi)]),
            root / "data" / f"train-{shard:05d}-of-00003.parquet",
        )
    pq.write_table(
        pa.Table.from_pylist([_chat(100)]), root / "data" / "test-00000-of-00001.parquet"
    )
    for shard in range(2):
        with open(root / "jsonl" / f"part-{shard}.jsonl", "w") as f:
            for i in range(shard * 5, shard * 5 + 5):
                f.write(
                    json.dumps(
                        {
                            "messages": [
                                {"role": "user", "content": f"j{i}"},
                                {"role": "assistant", "content": f"k{i}"},
                            ]
                        }
                    )
                    + "\n"
                )
    return root


def _build(tmp: Path, source: dict[str, Any], **extra: Any) -> tuple[dict[str, Any], Path]:
    data = {
        "name": "hub",
        "output": "out",
        "tokenizer": QWEN3,
        "renderer": "qwen3",
        "sources": [source],
        **extra,
    }
    (tmp / "recipe.yaml").write_text(yaml.safe_dump(data))
    recipe, base = load_recipe(tmp / "recipe.yaml")
    return build(recipe, base).manifest, tmp / "out"


def _source_rows(out: Path, m: dict[str, Any], split: str = "train") -> list[int]:
    rows: list[int] = []
    for s in m["splits"].get(split, {}).get("shards", []):
        rows += pq.read_table(out / s["path"], columns=["source_row"])["source_row"].to_pylist()
    return rows


def test_hub_parquet_config_by_shard(
    hub_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    m, out = _build(
        tmp_path,
        {"hf": str(hub_dir), "format": "prompt_completion", "skip": 3, "take": 9},
        split={"test_size": 2, "seed": 0},
    )
    assert m["stats"]["units"] == 2  # shards 0 and 1 hold rows 3..11; shard 2 is not read
    assert sorted(_source_rows(out, m, "train") + _source_rows(out, m, "test")) == list(
        range(3, 12)
    )
    assert m["splits"]["test"]["rows"] == 2
    src = m["sources"][0]
    assert src["path"] == f"hf:{hub_dir}" and src["hub"]["split"] == "train"
    assert (
        src["hub"]["commit"] is None and len(src["files"]) == 3
    )  # a local folder: file identities
    assert src["files"][0]["uri"].endswith("train-00000-of-00003.parquet")


def test_hub_jsonl_data_files_and_split(
    hub_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    m, out = _build(
        tmp_path,
        {"hf": str(hub_dir), "data_files": {"train": "jsonl/*.jsonl"}, "format": "messages"},
    )
    assert sorted(_source_rows(out, m)) == list(range(10))
    assert m["stats"]["units"] == 2  # one per file shard
    m2, _ = _build(
        tmp_path,
        {"hf": str(hub_dir), "split": "test", "format": "prompt_completion"},
        output="out2",
    )
    assert m2["splits"]["train"]["rows"] == 1


def test_hub_missing_split_and_dataset(
    hub_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SourceError, match="validation"):
        _build(tmp_path, {"hf": str(hub_dir), "split": "validation", "format": "prompt_completion"})
    with pytest.raises(SourceError, match="not in the Hub cache"):
        _build(tmp_path, {"hf": "nobody/no-such-dataset", "format": "prompt_completion"})


def test_revision_resolves_from_cache_refs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    refs = tmp_path / "datasets--org--name" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text("a" * 40 + "\n")
    assert resolve_commit("org/name", None) == "a" * 40
    assert resolve_commit("org/name", "b" * 40) == "b" * 40  # a sha is already a commit
    with pytest.raises(SourceError, match="v2"):
        resolve_commit("org/name", "v2")


def test_hub_source_on_a_forked_pool(
    hub_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Workers forked from a driver that planned the Hub source (datasets, its filesystems) read
    # their shards in their own process, and write what one process writes.
    from shardprep.build import run as build_mod

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = {"hf": str(hub_dir), "data_files": {"train": "jsonl/*.jsonl"}, "format": "messages"}
    one, out = _build(tmp_path, source, workers=1)
    monkeypatch.setattr(build_mod, "_MIN_ROWS_FOR_POOL", 0)
    two, out2 = _build(tmp_path, source, workers=2, output="out2")
    assert [s["sha256"] for s in two["splits"]["train"]["shards"]] == [
        s["sha256"] for s in one["splits"]["train"]["shards"]
    ]

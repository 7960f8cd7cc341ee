"""Merging a split's unit shards into Parquet files of the size asked for, rows and counts kept
exactly; a damaged unit shard is never merged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from shardprep.build.compact import DamagedUnitShard, compact_split
from shardprep.build.run import build as run_build
from shardprep.cli.app import app
from shardprep.errors import BuildError
from shardprep.recipe import load_recipe
from shardprep.store.storage import Output
from shardprep.tasks import TASKS

ROOT = Path(__file__).parents[2]
QWEN3 = ROOT / "tests" / "fixtures" / "tokenizers" / "qwen3"
runner = CliRunner()


def _build(tmp: Path, task: str = "sft") -> tuple[Path, dict[str, Any]]:
    if task == "sft":
        rows = [
            {
                "messages": [
                    {"role": "user", "content": f"question {i} " * (1 + i % 7)},
                    {"role": "assistant", "content": f"answer {i} " * (1 + i % 5)},
                ]
            }
            for i in range(300)
        ]
        source = {"path": "d.jsonl"}
    else:
        rows = [
            {"prompt": f"q{i}?", "chosen": f"good {i} " * (1 + i % 4), "rejected": f"bad {i}"}
            for i in range(120)
        ]
        source = {"path": "d.jsonl", "format": "text_pair"}
    (tmp / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {
        "name": "c",
        "output": str(tmp / "out"),
        "tokenizer": str(QWEN3),
        "renderer": "qwen3_disable_thinking",
        "task": task,
        "sources": [source],
        "workers": 1,
        "work_unit_rows": 16,
        "shards": {"max_rows": 16},  # one Parquet shard per unit's rows
    }
    (tmp / "r.yaml").write_text(yaml.safe_dump(recipe))
    res = runner.invoke(app, ["build", str(tmp / "r.yaml"), "--quiet"])
    assert res.exit_code == 0, res.output
    return tmp / "out", json.loads((tmp / "out" / "manifest.json").read_text())


def _rows(build: Path, shards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for s in shards for r in pq.read_table(build / s["path"]).to_pylist()]


@pytest.mark.parametrize("task", ["sft", "dpo"])
def test_merged_shards_keep_rows_order_and_counts(tmp_path: Path, task: str) -> None:
    build, m = _build(tmp_path, task)
    shards = [dict(s) for s in m["splits"]["train"]["shards"]]
    size = sum(s["bytes"] for s in shards)
    max_bytes = size // 3 + 1  # about three files
    schema = TASKS[task].schema
    merged = compact_split(
        Output(str(build)),
        "merged",
        "train",
        shards,
        schema,
        max_rows=10_000,
        max_bytes=max_bytes,
        row_group_rows=1024,
    )
    # Parquet in, Parquet out: the learned size ratio is about 1, so about three files.
    assert len(shards) > 6 and 2 <= len(merged) <= 5
    assert all(s["bytes"] <= max_bytes * 1.2 for s in merged[:-1])
    assert _rows(build, merged) == _rows(build, shards)  # same rows, same order
    for key in ("rows", "tokens", "trained_tokens"):
        assert sum(s[key] for s in merged) == sum(s[key] for s in shards), key
    for s in merged:
        assert s["bytes"] == (build / s["path"]).stat().st_size
        assert (
            pq.read_schema(build / s["path"])
            .remove_metadata()
            .equals(pq.read_schema(build / shards[0]["path"]).remove_metadata())
        )
    # max_rows bounds each file too.
    by_rows = compact_split(
        Output(str(build)),
        "by_rows",
        "train",
        shards,
        schema,
        max_rows=50,
        max_bytes=1 << 40,
        row_group_rows=1024,
    )
    assert all(s["rows"] <= 50 for s in by_rows) and len(by_rows) == -(
        -sum(s["rows"] for s in shards) // 50
    )
    assert (
        compact_split(
            Output(str(build)),
            "again",
            "train",
            merged,
            schema,
            max_rows=10_000,
            max_bytes=1 << 40,
            row_group_rows=1024,
        )
        != merged
    )  # one file now
    # One unit shard is still written as a Parquet shard of its own (one encoding for every build).
    one = compact_split(
        Output(str(build)),
        "one",
        "train",
        [shards[0]],
        schema,
        max_rows=10_000,
        max_bytes=max_bytes,
        row_group_rows=1024,
    )
    assert len(one) == 1 and _rows(build, one) == _rows(build, [shards[0]])
    # A shard whose bytes are not the recorded ones is refused before any row of it is used.
    with pytest.raises(DamagedUnitShard):
        compact_split(
            Output(str(build)),
            "bad",
            "train",
            [{**shards[0], "sha256": "0" * 64}],
            schema,
            max_rows=10_000,
            max_bytes=max_bytes,
            row_group_rows=1024,
        )


def test_build_writes_few_files_and_removes_unit_shards(tmp_path: Path) -> None:
    """The issue's case: small units, two workers, a large max_bytes -> one file per split."""
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"q{i}"},
                {"role": "assistant", "content": f"a{i}"},
            ]
        }
        for i in range(600)
    ]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {
        "name": "few",
        "output": str(tmp_path / "out"),
        "tokenizer": str(QWEN3),
        "renderer": "qwen3",
        "sources": [{"path": "d.jsonl"}],
        "split": {"test_size": 50, "seed": 0},
        "workers": 2,
        "work_unit_rows": 32,
        "shards": {"max_bytes": "64MB"},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    res = runner.invoke(app, ["build", str(tmp_path / "r.yaml"), "--quiet"])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["stats"]["units"] >= 19
    assert {k: len(v["shards"]) for k, v in m["splits"].items()} == {"train": 1, "test": 1}
    assert m["splits"]["train"]["rows"] == 550 and m["splits"]["test"]["rows"] == 50
    data = tmp_path / "out" / m["data_dir"]
    assert sorted(p.name for p in data.glob("*.parquet")) == [
        "test-00000.parquet",
        "train-00000.parquet",
    ]
    assert runner.invoke(app, ["verify", str(tmp_path / "out")]).exit_code == 0
    again = runner.invoke(app, ["build", str(tmp_path / "r.yaml"), "--json"])
    assert json.loads(again.output)["status"] == "up_to_date"


def test_a_damaged_unit_shard_fails_the_commit_and_its_unit_is_redone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shardprep.build.compact as compact

    (tmp_path / "clean").mkdir()
    _build(tmp_path / "clean")
    clean = json.loads((tmp_path / "clean" / "out" / "manifest.json").read_text())
    (tmp_path / "hit").mkdir()
    rows = (tmp_path / "clean" / "d.jsonl").read_text()
    (tmp_path / "hit" / "d.jsonl").write_text(rows)
    recipe = yaml.safe_load((tmp_path / "clean" / "r.yaml").read_text())
    recipe["output"] = str(tmp_path / "hit" / "out")
    (tmp_path / "hit" / "r.yaml").write_text(yaml.safe_dump(recipe))
    real = compact.Streaming.offer

    def flip_then_merge(self: compact.Streaming, results: dict[int, Any]) -> None:
        # Unit 3's shard damaged after its unit wrote it, before the build merges it (as soon
        # as its turn comes, while later units run).
        if 3 in results and not getattr(self, "flipped", False):
            self.flipped = True  # type: ignore[attr-defined]
            path = tmp_path / "hit" / "out" / results[3].shards["train"][0]["path"]
            data = bytearray(path.read_bytes())
            data[len(data) // 2] ^= 0xFF  # a flipped bit in the middle of a unit shard
            path.write_bytes(bytes(data))
        real(self, results)

    monkeypatch.setattr(compact.Streaming, "offer", flip_then_merge)
    with pytest.raises(BuildError, match="damaged"):
        run_build(*load_recipe(tmp_path / "hit" / "r.yaml"))
    assert not (tmp_path / "hit" / "out" / "manifest.json").exists()
    monkeypatch.setattr(compact.Streaming, "offer", real)
    res = run_build(*load_recipe(tmp_path / "hit" / "r.yaml"))
    assert res.resumed_units == clean["stats"]["units"] - 1  # only the damaged unit is redone
    got = [s["sha256"] for s in res.manifest["splits"]["train"]["shards"]]
    assert got == [s["sha256"] for s in clean["splits"]["train"]["shards"]]


def test_compaction_while_units_run_equals_the_commit_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unit shards merged as their turn comes (results arriving from a pool of two workers, and
    again offered one at a time in a shuffled order) give exactly the files of the one pass at
    commit, both splits, two sources. Shards whose source names are settled are streamed row
    group by row group; offered again with names that are wrong (every unit said to be the first
    source's), a shard whose dictionary then changes falls back to being written whole."""
    import random

    from shardprep.build import compact, run
    from shardprep.store import shards as store_shards

    seen: dict[str, Any] = {"streamed": {}, "shuffled": {}}
    real_offer, real_take = compact.Streaming.offer, compact.Streaming.take
    streams = {"closed": 0, "abandoned": 0}
    real_close, real_abandon = (
        store_shards.RowGroupStream.close,
        store_shards.RowGroupStream.abandon,
    )

    def close(self: store_shards.RowGroupStream) -> Any:
        streams["closed"] += 1
        return real_close(self)

    def abandon(self: store_shards.RowGroupStream) -> None:
        streams["abandoned"] += self.writer is not None  # not the one close() ends with
        real_abandon(self)

    monkeypatch.setattr(store_shards.RowGroupStream, "close", close)
    monkeypatch.setattr(store_shards.RowGroupStream, "abandon", abandon)

    def offer(self: compact.Streaming, results: Any) -> None:
        seen["results"] = results
        real_offer(self, results)

    def take(self: compact.Streaming, split: str, shards: list[dict[str, Any]]) -> Any:
        seen["streamed"][split] = real_take(self, split, shards)
        wrong = [self.names[0]] * len(self.units)
        again = compact.Streaming(
            self.output, self.folder, self.schema, self.units, wrong, **self.sizes
        )
        arrived: dict[int, Any] = {}
        order = list(self.units)
        random.Random(len(shards)).shuffle(order)
        for index in order:
            arrived[index] = seen["results"][index]
            real_offer(again, arrived)
        seen["shuffled"][split] = real_take(again, split, shards)
        return None  # the commit's own pass writes what the manifest lists

    monkeypatch.setattr(compact.Streaming, "offer", offer)
    monkeypatch.setattr(compact.Streaming, "take", take)
    monkeypatch.setattr(run, "_MIN_ROWS_FOR_POOL", 0)
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"question {i} " * (1 + i % 7)},
                {"role": "assistant", "content": f"answer {i} " * (1 + i % 5)},
            ]
        }
        for i in range(300)
    ]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:200]))
    (tmp_path / "e.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[200:]))
    (tmp_path / "r.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "s",
                "output": str(tmp_path / "out"),
                "tokenizer": str(QWEN3),
                "renderer": "qwen3",
                "sources": [{"path": "d.jsonl"}, {"path": "e.jsonl"}],
                "work_unit_rows": 16,
                "split": {"test_size": 40},
                "shards": {"max_bytes": 4000, "row_group_rows": 5},
            }
        )
    )
    recipe, base = load_recipe(tmp_path / "r.yaml")
    m = run_build(recipe, base, workers=2).manifest
    assert set(m["splits"]) == {"train", "test"}
    for split, info in m["splits"].items():
        assert len(info["shards"]) >= 2
        assert seen["streamed"][split] == info["shards"], split
        assert seen["shuffled"][split] == info["shards"], split
    assert streams["closed"] >= 2 and streams["abandoned"] >= 1, streams


def test_a_unit_shard_lost_before_its_streamed_merge_fails_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A unit shard gone before the build merges it (while later units run): the commit's own
    pass takes over and the build fails naming the lost shard, with no manifest."""
    import shardprep.build.compact as compact

    (tmp_path / "lost").mkdir()
    real = compact.Streaming.offer

    def lose_then_merge(self: compact.Streaming, results: dict[int, Any]) -> None:
        if 3 in results and not getattr(self, "lost", False):
            self.lost = True  # type: ignore[attr-defined]
            (tmp_path / "lost" / "out" / results[3].shards["train"][0]["path"]).unlink()
        real(self, results)

    rows = [
        {"messages": [{"role": "user", "content": f"q {i}"}, {"role": "assistant", "content": "a"}]}
        for i in range(100)
    ]
    (tmp_path / "lost" / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {
        "name": "c",
        "output": str(tmp_path / "lost" / "out"),
        "tokenizer": str(QWEN3),
        "renderer": "qwen3",
        "sources": [{"path": "d.jsonl"}],
        "work_unit_rows": 16,
        "shards": {"max_rows": 40},
    }
    (tmp_path / "lost" / "r.yaml").write_text(yaml.safe_dump(recipe))
    monkeypatch.setattr(compact.Streaming, "offer", lose_then_merge)
    with pytest.raises(BuildError, match=r"1 shard\(s\) this build wrote are not in"):
        run_build(*load_recipe(tmp_path / "lost" / "r.yaml"))
    assert not (tmp_path / "lost" / "out" / "manifest.json").exists()

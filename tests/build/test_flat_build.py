"""The flat path (encoder buffers -> make_examples -> Arrow columns) writes exactly what the
per-row path would: same rows, ids, weights, drops and shard cuts, with either encoder; and the
encoder is recorded in the manifest but never changes the fingerprint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from shardprep.build.run import build
from shardprep.encode.examples import Dropped, make_example
from shardprep.encode.tokenize import BatchEncoder, render_supervised_batch
from shardprep.errors import RowError
from shardprep.recipe import load_recipe
from shardprep.renderers.base import TrainOnWhat
from shardprep.renderers.registry import get_renderer
from shardprep.store.shards import read_shard_file
from shardprep.tokenizer import load_tokenizer

ROOT = Path(__file__).parents[2]
QWEN3 = str(ROOT / "tests/fixtures/tokenizers/qwen3")


def _rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i in range(120):
        answer = " ".join(["step"] * (i % 37)) + f" so the answer is {i}. <|im_end|> stays text"
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": "Solve it."},
                    {"role": "user", "content": f"Problem {i}: what is {i} * 3?"},
                    {"role": "assistant", "content": answer},
                ]
            }
        )
    rows[7] = {"messages": [{"role": "user", "content": "nothing to train"}]}  # no_trained_tokens
    rows[11] = {"messages": [{"role": "wizard", "content": "x"}]}  # unknown_role: skipped
    return rows


def _recipe(tmp_path: Path, **extra: Any) -> tuple[Any, Path]:
    data = tmp_path / "data.jsonl"
    if not data.exists():  # rewritten, it would be a new input (its mtime is in the fingerprint)
        data.write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    recipe = {
        "name": "flat",
        "output": "out",
        "tokenizer": QWEN3,
        "renderer": "qwen3",
        "train_on": "all_assistant_messages",
        "max_length": 40,
        "weight_reduction": "mean",
        "on_error": "skip",
        "split": {"test_size": 9, "seed": 3},
        "shards": {"max_rows": 13, "max_bytes": 3000},
        "work_unit_rows": 50,
        "sources": [{"name": "s", "path": "data.jsonl"}],
        **extra,
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return load_recipe(tmp_path / "recipe.yaml")


def _expected(recipe: Any) -> dict[int, Any]:
    """Per row, make_example over render_supervised_batch with the reference encoder."""
    tok = load_tokenizer(QWEN3)
    renderer = get_renderer("qwen3", tok)
    enc = BatchEncoder(tok, encoder="tokenizers")
    out: dict[int, Any] = {}
    for i, row in enumerate(_rows()):
        if row["messages"][0]["role"] == "wizard":
            continue
        [res] = render_supervised_batch(
            renderer, enc, [row["messages"]], TrainOnWhat.ALL_ASSISTANT_MESSAGES
        )
        assert not isinstance(res, RowError)
        out[i] = make_example(res.tokens, res.weights, max_length=40, reduction="mean")
    return out


@pytest.mark.parametrize("encoder", ["fastokens", "tokenizers"])
def test_flat_build_equals_per_row_path(
    tmp_path: Path, encoder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cuts checked are the unit writer's: compaction, which merges the unit shards into the
    # build's Parquet files, is left out.
    monkeypatch.setattr("shardprep.build.compact.compact_manifest", lambda *a, **k: [])
    recipe, base = _recipe(tmp_path, encoder=encoder)
    m = build(recipe, base).manifest
    assert m["tokenizer"]["encoder"]["name"] == encoder
    assert m["stats"]["dropped"] == {"no_trained_tokens": 1, "unknown_role": 1}
    want = _expected(recipe)
    seen = set()
    for split in ("train", "test"):
        shards = m["splits"][split]["shards"]
        for k, shard in enumerate(shards):
            path = tmp_path / "out" / shard["path"]
            table = read_shard_file(path.read_bytes(), path.name)  # a unit's scratch shard
            # Cut exactly where adding one row at a time cuts: at 13 rows or once the byte
            # estimate reaches 3000, and never earlier; a unit's last shard takes the rest.
            sizes = [32 + 12 * n for n in table.column("length").to_pylist()]
            assert all(j < 13 and sum(sizes[:j]) < 3000 for j in range(1, len(sizes)))
            unit_last = (
                k + 1 == len(shards)
                or shards[k + 1]["path"].rsplit("-", 1)[0] != shard["path"].rsplit("-", 1)[0]
            )
            if not unit_last:
                assert len(sizes) == 13 or sum(sizes) >= 3000
            for row in table.to_pylist():
                ex = want[row["source_row"]]
                assert not isinstance(ex, Dropped)
                assert row["input_ids"] == ex.input_ids.tolist()
                assert row["target_ids"] == ex.target_ids.tolist()
                assert np.array_equal(np.asarray(row["weights"], np.float32), ex.weights)
                assert row["length"] == len(ex.input_ids) and row["source"] == "s"
                seen.add(row["source_row"])
    assert seen == {i for i, ex in want.items() if not isinstance(ex, Dropped)}
    assert m["splits"]["train"]["rows"] + m["splits"]["test"]["rows"] == len(seen)
    assert len(m["splits"]["train"]["shards"]) > 5  # the cuts above were exercised


def test_encoder_never_changes_the_fingerprint(tmp_path: Path) -> None:
    recipe, base = _recipe(tmp_path, encoder="tokenizers")
    first = build(recipe, base).manifest
    recipe, base = _recipe(tmp_path, encoder="fastokens")
    again = build(recipe, base)
    # Same fingerprint: up to date, nothing rebuilt.
    assert again.status == "up_to_date"
    assert again.manifest["fingerprint"] == first["fingerprint"]

"""task: rl_prompts — prompt tokens equal tinker's build_generation_prompt; passthrough columns are typed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shardprep.encode.tokenize import BatchEncoder, render_prompt_batch
from shardprep.errors import RecipeError, RowError
from shardprep.formats import to_conversation
from shardprep.recipe import parse_recipe
from shardprep.renderers.registry import get_renderer
from shardprep.tasks.rl_prompts import prompt_messages

from ._helpers import TOY, read_rows, run_build, write_jsonl


def _rows(n: int) -> list[dict[str, Any]]:
    return [
        {
            "messages": [
                {"role": "system", "content": "Be exact."},
                {"role": "user", "content": f"What is {i} * {i}?" + " pad" * (i % 4) * 10},
            ]
            + ([{"role": "assistant", "content": str(i * i)}] if i % 2 else []),
            "answer": str(i * i),
            "level": i,
            "meta": {"id": i, "tags": ["math"]},
            "score": i / 2,
        }
        for i in range(n)
    ]


PASS = {"answer": "string", "level": "int64", "meta": "json", "score": "float64"}


def test_prompts_equal_build_generation_prompt(tmp_path: Path, tokenizer_for: Any) -> None:
    data = _rows(30)
    write_jsonl(tmp_path / "q.jsonl", data)
    res = run_build(
        tmp_path,
        task="rl_prompts",
        passthrough=PASS,
        work_unit_rows=10,
        shards={"max_rows": 4},
        sources=[{"name": "q", "path": "q.jsonl"}],
    )
    assert res.manifest["schema"] == "rl_prompts/1"
    rows = read_rows(res)
    assert len(rows) == 30
    renderer = get_renderer("qwen3", tokenizer_for("toy"))
    convs = [prompt_messages(to_conversation(d, format="messages")) for d in data]
    assert all(c[-1]["role"] == "user" for c in convs)  # the trailing answer is not in the prompt
    expected = render_prompt_batch(renderer, BatchEncoder(tokenizer_for("toy")), convs)
    for r in rows:
        assert r["prompt_ids"] == expected[r["source_row"]].tolist() and r["length"] == len(
            r["prompt_ids"]
        )
        d = data[r["source_row"]]
        assert (r["answer"], r["level"], r["score"]) == (d["answer"], d["level"], d["score"])
        assert r["meta"] == json.dumps({"id": d["level"], "tags": ["math"]})
    # Every shard has the same declared types, whatever its unit saw.
    schemas = {
        pq.read_schema(Path(res.output) / s["path"])
        for s in res.manifest["splits"]["train"]["shards"]
    }
    assert len(schemas) == 1
    schema = schemas.pop()
    assert schema.field("answer").type == pa.string() and schema.field("level").type == pa.int64()
    assert schema.field("score").type == pa.float64() and schema.field("meta").type == pa.string()


def test_max_prompt_tokens_drops_and_counts(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "q.jsonl", _rows(8))
    full = read_rows(
        run_build(tmp_path, task="rl_prompts", sources=[{"name": "q", "path": "q.jsonl"}])
    )
    limit = sorted(r["length"] for r in full)[3]
    res = run_build(
        tmp_path,
        task="rl_prompts",
        max_prompt_tokens=limit,
        sources=[{"name": "q", "path": "q.jsonl"}],
    )
    kept = read_rows(res)
    assert all(r["length"] <= limit for r in kept)
    assert len(kept) + res.manifest["stats"]["dropped"]["overlong"] == 8


def test_bad_and_missing_passthrough(tmp_path: Path) -> None:
    data = _rows(4)
    data[1]["level"] = "high"
    data[2]["answer"] = None  # null stays null
    del data[3]["score"]
    write_jsonl(tmp_path / "q.jsonl", data)
    src = [{"name": "q", "path": "q.jsonl"}]
    with pytest.raises(RowError, match="bad_passthrough"):
        run_build(tmp_path, task="rl_prompts", passthrough=PASS, sources=src)
    res = run_build(tmp_path, task="rl_prompts", passthrough=PASS, on_error="skip", sources=src)
    assert res.manifest["stats"]["dropped"] == {"bad_passthrough": 1, "missing_field": 1}
    rows = read_rows(res)
    assert [r["answer"] for r in rows] == ["0", None]


def test_passthrough_only_for_rl_prompts() -> None:
    base = {
        "name": "t",
        "output": "o",
        "tokenizer": TOY,
        "renderer": "qwen3",
        "sources": [{"path": "x.jsonl"}],
    }
    with pytest.raises(RecipeError, match="passthrough: only for task rl_prompts"):
        parse_recipe({**base, "passthrough": {"a": "string"}})
    with pytest.raises(RecipeError, match="columns the task writes"):
        parse_recipe({**base, "task": "rl_prompts", "passthrough": {"length": "int64"}})
    with pytest.raises(RecipeError, match="passthrough.a"):
        parse_recipe({**base, "task": "rl_prompts", "passthrough": {"a": "decimal"}})


def test_reserved_columns_are_the_schema_columns() -> None:
    # Spelled out in rl_prompts.py so that checking a recipe builds no Arrow field.
    from shardprep.tasks.rl_prompts import RESERVED_COLUMNS, SCHEMA

    assert frozenset(SCHEMA.required_columns) == RESERVED_COLUMNS

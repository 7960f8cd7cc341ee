"""Helpers shared by the dpo / rl_prompts / pretrain task tests (toy tokenizer: it loads fast)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

from shardprep.build.run import BuildResult, build
from shardprep.recipe import load_recipe

ROOT = Path(__file__).parents[2]
TOY = str(ROOT / "tests/fixtures/tokenizers/toy")
LLAMA3 = str(ROOT / "tests/fixtures/tokenizers/llama3")
LF = ROOT / "tests/fixtures/data/llamafactory"


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run_build(
    tmp_path: Path, *, task: str, sources: list[dict[str, Any]], **overrides: Any
) -> BuildResult:
    recipe: dict[str, Any] = {
        "name": "t",
        "output": "out",
        "tokenizer": TOY,
        "renderer": "qwen3",
        "task": task,
        "sources": sources,
        **overrides,
    }
    p = tmp_path / "recipe.yaml"
    p.write_text(yaml.safe_dump(recipe))
    r, base = load_recipe(p)
    return build(r, base)


def read_rows(result: BuildResult, split: str = "train") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for shard in result.manifest["splits"][split]["shards"]:
        rows += pq.read_table(Path(result.output) / shard["path"]).to_pylist()
    return rows

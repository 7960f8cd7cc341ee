"""End to end: the glaive slice's `tools` column through a qwen3 build (`tools: auto|ignore`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from shardprep.build.run import build
from shardprep.recipe import load_recipe
from shardprep.tokenizer import load_tokenizer

ROOT = Path(__file__).parents[2]
QWEN3 = str(ROOT / "tests/fixtures/tokenizers/qwen3")
GLAIVE = ROOT / "demo/data/glaive_toolcall_en_demo.slice.json"
QWEN3_TOOLS_BLOCK = (
    "<|im_start|>system\n# Tools\n\nYou may call one or more functions to assist with the user query."
    "\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
    '{"type": "function", "function": '
)


def _build(tmp_path: Path, **overrides: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    recipe = {
        "name": "tools",
        "output": "out",
        "tokenizer": QWEN3,
        "renderer": "qwen3",
        "train_on": "all_assistant_messages",
        "max_length": 2048,
        "sources": [{"name": "glaive_tools", "path": str(GLAIVE), "format": "sharegpt"}],
        "on_error": "skip",
        **overrides,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = build(*load_recipe(path))
    out = tmp_path / "out"
    rows: list[dict[str, Any]] = []
    for shard in result.manifest["splits"]["train"]["shards"]:
        rows += pq.read_table(out / shard["path"]).to_pylist()
    return result.manifest, sorted(rows, key=lambda r: r["source_row"])


def _decoded(row: dict[str, Any]) -> str:
    tok = load_tokenizer(QWEN3)
    return str(
        tok.tokenizer.decode(row["input_ids"] + row["target_ids"][-1:], skip_special_tokens=False)
    )


@pytest.mark.parametrize("mode", ["auto", "ignore"])
def test_glaive_tools_column(tmp_path: Path, mode: str) -> None:
    manifest, rows = _build(tmp_path, **({"tools": mode} if mode == "ignore" else {}))
    data = json.loads(GLAIVE.read_text())
    first = rows[0]
    assert first["source_row"] == 0 and json.loads(data[0]["tools"])  # row 0 declares tools
    text = _decoded(first)
    spec = json.loads(data[0]["tools"])[0]
    if mode == "auto":
        assert text.startswith(QWEN3_TOOLS_BLOCK + json.dumps({"name": spec["name"]})[:-1])
        assert "tools_unsupported" not in json.dumps(manifest)
    else:
        assert text.startswith("<|im_start|>user\n") and "# Tools" not in text
    # a row with an empty tools list ("[]") never gets a tools block
    empty = next(i for i, r in enumerate(data) if r["tools"] == "[]")
    row = next(r for r in rows if r["source_row"] == empty)
    assert "# Tools" not in _decoded(row)


def test_renderer_without_declarations_skips_rows_with_tools(tmp_path: Path) -> None:
    manifest, rows = _build(tmp_path, renderer="role_colon")
    data = json.loads(GLAIVE.read_text())
    with_tools = {i for i, r in enumerate(data) if json.loads(r["tools"])}
    assert with_tools and not with_tools & {r["source_row"] for r in rows}
    assert "tools_unsupported" in json.dumps(manifest)


def test_hf_template_gives_the_tools_to_the_models_template(tmp_path: Path) -> None:
    """hf_template passes a row's tools to the model's own template (Qwen3's declares them in
    its system block): no row is refused tools_unsupported. Per turn, since Qwen3's template
    rewrites earlier turns; the first example of a tools row opens with the declarations."""
    manifest, rows = _build(tmp_path, renderer="hf_template", examples="per_turn")
    data = json.loads(GLAIVE.read_text())
    with_tools = {i for i, r in enumerate(data) if json.loads(r["tools"])}
    kept = {r["source_row"] for r in rows}
    assert "tools_unsupported" not in json.dumps(manifest)
    assert with_tools and with_tools <= kept
    first = min(with_tools)
    row = next(r for r in rows if r["source_row"] == first)
    spec = json.loads(data[first]["tools"])[0]
    text = _decoded(row)
    assert text.startswith("<|im_start|>system\n# Tools") and spec["name"] in text

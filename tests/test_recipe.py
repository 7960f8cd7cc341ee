from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shardprep.build.checks import check_recipe
from shardprep.errors import RecipeError
from shardprep.recipe import load_recipe, parse_recipe
from shardprep.sizes import parse_size

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))

MINIMAL = {
    "name": "t",
    "output": "out",
    "tokenizer": "tok",
    "renderer": "qwen3",
    "sources": [{"path": "data.jsonl"}],
}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates(config: Path) -> None:
    recipe, base = load_recipe(config)
    assert check_recipe(recipe, base) == []


def test_minimal_recipe_defaults() -> None:
    r = parse_recipe(MINIMAL)
    assert r.train_on.value == "all_assistant_messages"
    assert r.renderer.name == "qwen3" and r.renderer.options == {}
    assert r.sources[0].resolved_name == "data"
    assert r.on_error == "fail" and r.weight_reduction == "none"


def test_renderer_mapping_form_carries_options() -> None:
    r = parse_recipe(
        {**MINIMAL, "renderer": {"name": "gpt_oss_medium_reasoning", "current_date": "2025-06-28"}}
    )
    assert r.renderer.name == "gpt_oss_medium_reasoning"
    assert r.renderer.options == {"current_date": "2025-06-28"}


def test_all_errors_reported_at_once_with_yaml_paths() -> None:
    bad = {
        **MINIMAL,
        "train_on": "everything",
        "max_length": 1,
        "sources": [{"path": "a.jsonl", "format": "csvish", "colums": {}}],
        "shards": {"max_bytes": "lots"},
        "surprise": 1,
    }
    with pytest.raises(RecipeError) as info:
        parse_recipe(bad)
    text = "\n".join(info.value.problems)
    for expected in (
        "train_on",
        "max_length",
        "sources[0].format",
        "sources[0].colums: unknown key",
        "shards.max_bytes",
        "surprise: unknown key",
    ):
        assert expected in text, (expected, text)
    assert len(info.value.problems) >= 6


def test_missing_required_keys_are_named() -> None:
    with pytest.raises(RecipeError) as info:
        parse_recipe({"name": "x"})
    text = "\n".join(info.value.problems)
    for key in ("output", "tokenizer", "renderer", "sources"):
        assert key in text


def test_duplicate_source_names_rejected() -> None:
    with pytest.raises(RecipeError, match="unique"):
        parse_recipe({**MINIMAL, "sources": [{"path": "a/x.jsonl"}, {"path": "b/x.jsonl"}]})


def test_sizes() -> None:
    assert parse_size("256MB") == 256_000_000
    assert parse_size("256MiB") == 256 * 2**20
    assert parse_size("1GiB") == 2**30
    assert parse_size(4096) == 4096
    with pytest.raises(ValueError):
        parse_size("big")


def test_load_recipe_reports_yaml_syntax_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")
    p = tmp_path / "r.yaml"
    p.write_text("name: [unclosed\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(p)


def test_check_recipe_collects_semantic_problems(tmp_path: Path) -> None:
    p = tmp_path / "r.yaml"
    p.write_text(
        yaml.safe_dump(
            {**MINIMAL, "renderer": "no_such_renderer", "tokenizer": "missing_tok_dir/x"}
        )
    )
    recipe, base = load_recipe(p)
    problems = check_recipe(recipe, base)
    assert any(pr.startswith("tokenizer:") for pr in problems)
    assert any(pr.startswith("sources[0].path:") for pr in problems)

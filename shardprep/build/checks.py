"""Checks that need more than the recipe's shape: tokenizer, renderer, inputs. All problems at once."""

from __future__ import annotations

from pathlib import Path

from shardprep.errors import ShardprepError
from shardprep.sources.files import expand_paths
from shardprep.tokenizer import load_tokenizer
from shardprep.recipe import Recipe
from shardprep.renderers.registry import get_renderer


def check_recipe(recipe: Recipe, base_dir: Path) -> list[str]:
    problems: list[str] = []
    tokenizer = None
    try:
        tokenizer = load_tokenizer(recipe.tokenizer, base_dir=base_dir)
    except ShardprepError as exc:
        problems.append(f"tokenizer: {exc}")
    if tokenizer is not None:
        try:
            renderer = get_renderer(recipe.renderer.name, tokenizer, dict(recipe.renderer.options))
            renderer.check_tokenizer()
        except ShardprepError as exc:
            problems.append(f"renderer: {exc}")
    for i, src in enumerate(recipe.sources):
        if src.hf:
            continue  # resolved (revision -> commit) by plan_build, which needs the network/cache
        try:
            expand_paths(src.path, base_dir=base_dir, storage_options=src.storage_options)
        except ShardprepError as exc:
            problems.append(f"sources[{i}].path: {exc}")
    return problems

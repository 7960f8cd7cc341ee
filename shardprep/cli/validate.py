"""`prep validate RECIPE`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from shardprep.cli.errors import handle_errors
from shardprep.cli.state import debug
from shardprep.errors import RecipeError


@handle_errors(debug)
def validate(recipe: Path = typer.Argument(..., help="Recipe YAML file.")) -> None:
    """Check a recipe (keys, tokenizer, renderer, inputs) without building.

    Example: prep validate configs/demo.yaml
    """
    from shardprep.build.checks import check_recipe
    from shardprep.recipe import load_recipe

    parsed, base_dir = load_recipe(recipe)
    problems = check_recipe(parsed, base_dir)
    if problems:
        raise RecipeError(problems, path=str(recipe))
    what = f"{recipe} ({parsed.name}, renderer {parsed.renderer.name}, {len(parsed.sources)} source(s))"
    Console(highlight=False).print(f"[green]ok[/]: {escape(what)}", soft_wrap=True)

"""`prep validate RECIPE`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from shardprep.cli.errors import handle_errors
from shardprep.cli.state import debug
from shardprep.errors import RecipeError, ShardprepError

if TYPE_CHECKING:  # the library is imported inside the command: `prep --help` stays fast
    from shardprep.recipe import Recipe


def first_row_problems(recipe: Recipe, report: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(problems, notes) from a preview of the first rows: a bad row is a problem when the build
    would stop there (`on_error: fail`) or when no sampled row of its source fits the format;
    otherwise (`on_error: skip`) a note, since the build would skip and count it."""
    from shardprep.sources.source import NO_ROWS

    index = {s.resolved_name: i for i, s in enumerate(recipe.sources)}
    # Rows that could not be read or converted carry no source row; drops (overlong, ...) do.
    bad = [e for e in report["row_errors"] if e["source_row"] is None]
    problems: list[str] = []
    notes: list[str] = []
    for src in report["sources"]:
        where = f"sources[{index[src['name']]}] ({src['name']}, format {src['format']})"
        if not src["rows_read"]:
            problems.append(f"{where}: {NO_ROWS}")
            continue
        errs = [e for e in bad if e["source"] == src["name"]]
        if not errs:
            continue
        first = errs[0]["message"]
        if src["rows_read"] and len(errs) == src["rows_read"]:
            problems.append(
                f"{where}: none of its first {src['rows_read']} rows fit; first: {first}"
            )
        elif recipe.on_error == "fail":
            problems.append(f"{where}: {first}")
        else:
            notes.append(
                f"{where}: {len(errs)} of its first {src['rows_read']} rows would be skipped; first: {first}"
            )
    return problems, notes


def _emit_json(recipe: Path, problems: list[str], notes: list[str]) -> NoReturn:
    import json

    typer.echo(
        json.dumps(
            {"recipe": str(recipe), "ok": not problems, "problems": problems, "notes": notes},
            indent=2,
            ensure_ascii=False,
        )
    )
    sys.exit(2 if problems else 0)


@handle_errors(debug)
def validate(
    recipe: Path = typer.Argument(..., help="Recipe YAML file."),
    rows: int = typer.Option(
        5,
        "--rows",
        "-n",
        help="Rows of each source to read and convert exactly as the build would (0: read no data).",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the result as JSON (ok, problems, notes); exit 2 as without."
    ),
) -> None:
    """Check a recipe (keys, tokenizer, renderer, output, inputs, and the first rows of each source
    against its format and columns) without building.

    Example: prep validate configs/demo.yaml
    """
    from shardprep.build.checks import check_recipe
    from shardprep.recipe import load_recipe
    from shardprep.views.preview import preview_recipe

    notes: list[str] = []
    try:
        parsed, base_dir = load_recipe(recipe)
        problems = check_recipe(parsed, base_dir)
        if not problems and rows > 0:
            # The task's own runner over the first rows (what `prep preview` shows), writing nothing.
            problems, notes = first_row_problems(parsed, preview_recipe(parsed, base_dir, n=rows))
    except ShardprepError as exc:
        # A file that cannot be read as its format stops the rows check: one more problem.
        if not as_json:
            raise
        _emit_json(recipe, exc.problems if isinstance(exc, RecipeError) else [str(exc)], notes)
    if as_json:
        _emit_json(recipe, problems, notes)
    if problems:
        raise RecipeError(problems, path=str(recipe))
    console = Console(highlight=False, soft_wrap=True)
    for note in notes:
        console.print(f"[yellow]note[/]: {escape(note)}")
    checked = f", first {rows} rows of each source converted" if rows > 0 else ""
    what = f"{recipe} ({parsed.name}, renderer {parsed.renderer.name}, {len(parsed.sources)} source(s){checked})"
    console.print(f"[green]ok[/]: {escape(what)}")

"""`prep preview RECIPE`: what a build would train on, from the first rows of each source, writing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from shardprep.cli.errors import handle_errors
from shardprep.cli.state import debug
from shardprep.pipeline.preview import preview_recipe
from shardprep.recipe import load_recipe
from shardprep.report.data import to_json
from shardprep.report.html import write_html
from shardprep.report.text import print_report


@handle_errors(debug)
def preview(
    recipe: Path = typer.Argument(..., help="Recipe YAML file."),
    n: int = typer.Option(5, "-n", "--rows", help="Rows to read from the start of each source."),
    source: str = typer.Option(None, "--source", help="Only this source (by its name in the recipe)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON for scripts."),
    html: Path = typer.Option(None, "--html", help="Also write a self-contained HTML page of the report here."),
) -> None:
    """Render and tokenize the first rows of each source exactly as `prep build` would, writing nothing."""
    parsed, base_dir = load_recipe(recipe)
    report = preview_recipe(parsed, base_dir, n=n, source=source)
    if html is not None:
        write_html(report, html)
    if as_json:
        typer.echo(json.dumps(to_json(report), indent=2, ensure_ascii=False))
        return
    console = Console(highlight=False)
    print_report(console, report)
    if html is not None:
        console.print(f"wrote {html}", soft_wrap=True, markup=False)

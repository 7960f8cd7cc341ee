"""`prep preview RECIPE`: what a build would train on, from the first rows of each source, writing nothing."""

from __future__ import annotations

from pathlib import Path

import typer

from shardprep.cli.errors import handle_errors
from shardprep.cli.state import debug


@handle_errors(debug)
def preview(
    recipe: Path = typer.Argument(..., help="Recipe YAML file."),
    n: int = typer.Option(5, "-n", "--rows", help="Rows to read from the start of each source."),
    source: str = typer.Option(
        None, "--source", help="Only this source (by its name in the recipe)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON for scripts."),
    html: Path = typer.Option(
        None, "--html", help="Also write a self-contained HTML page of the report here."
    ),
) -> None:
    """Render and tokenize the first rows of each source exactly as `prep build` would, writing nothing."""
    from shardprep.cli.report_output import emit_report
    from shardprep.recipe import load_recipe
    from shardprep.views.preview import preview_recipe

    parsed, base_dir = load_recipe(recipe)
    report = preview_recipe(parsed, base_dir, n=n, source=source)
    emit_report(report, as_json=as_json, html=html)

"""`prep renderers`."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from shardprep.cli.errors import handle_errors
from shardprep.cli.state import debug
from shardprep.renderers.registry import renderer_info, renderer_names


@handle_errors(debug)
def renderers(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List renderer names and the model families they are meant for.

    Example: prep renderers
    """
    infos = [renderer_info(n) for n in renderer_names()]
    if as_json:
        rows = [{"name": i.name, "description": i.description, "models": list(i.models)} for i in infos]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("renderer", "what it renders", "meant for")
    for i in infos:
        table.add_row(i.name, i.description, ", ".join(i.models) or "-")
    Console().print(table)

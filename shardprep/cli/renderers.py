"""`prep renderers`."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from shardprep.renderers.registry import renderer_info, renderer_names


def renderers(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List renderer names and the model families they are meant for."""
    rows = [{"name": n, **renderer_info(n)} for n in renderer_names()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("renderer", "meant for")
    for r in rows:
        table.add_row(r["name"], str(r.get("models") or r.get("description") or ""))
    Console().print(table)

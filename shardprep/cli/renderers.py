"""`prep renderers`."""

from __future__ import annotations

import json

import typer

from shardprep.cli.errors import handle_errors
from shardprep.cli.state import debug


@handle_errors(debug)
def renderers(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List renderer names and the model families they are meant for.

    Example: prep renderers
    """
    from rich.console import Console
    from rich.table import Column, Table
    from rich.text import Text

    from shardprep.renderers.registry import renderer_info, renderer_names
    from shardprep.report.text import print_fitted

    infos = [renderer_info(n) for n in renderer_names()]
    if as_json:
        rows = [
            {"name": i.name, "description": i.description, "models": list(i.models)} for i in infos
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    # Names and model ids are typed into recipes: never cut them short, wrap the description instead.
    name_width = max(len(i.name) for i in infos)
    table = Table(
        Column("renderer", min_width=name_width, no_wrap=True),
        Column("what it renders", ratio=1),
        Column("meant for", overflow="fold"),
    )
    for i in infos:
        # Text cells: descriptions hold template syntax ("[INST] … [/INST]"), not rich markup.
        table.add_row(Text(i.name), Text(i.description), Text("\n".join(i.models) or "-"))
    print_fitted(Console(), table)  # a pipe gets every column whole

"""`prep ls DIR`."""

from __future__ import annotations

import json

import typer

from shardprep.cli.errors import handle_errors
from shardprep.cli.state import debug


def _age(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@handle_errors(debug)
def ls(
    path: str = typer.Argument(".", help="Folder (or fsspec URL) to search for builds."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """List the builds under a folder: recipe name, fingerprint, size and age.

    Example: prep ls shards/
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from shardprep.report.text import print_fitted
    from shardprep.views.catalog import list_builds

    builds = list_builds(path)
    if as_json:
        typer.echo(json.dumps(builds, indent=2))
        return
    t = Table("path", "recipe", "fingerprint", "rows", "tokens", "size", "age")
    for b in builds:
        if "error" in b:
            t.add_row(
                Text(b["path"]),
                Text("invalid manifest: ", style="red") + Text(b["error"]),
                "",
                "",
                "",
                "",
                "",
            )
            continue
        # Paths and names are data: Text keeps a "[x]" in them from being read as rich markup.
        t.add_row(
            Text(b["path"]),
            Text(b["name"] or "-"),
            b["fingerprint"][:12],
            f"{b['rows']:,}",
            f"{b['tokens']:,}",
            f"{b['bytes'] / 1e6:,.1f} MB",
            _age(b["age_s"]),
        )
    print_fitted(Console(), t)  # a pipe gets every column whole

"""`prep formats [NAME]`: which fields each source format reads, an example row, the `columns:` map."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer

from shardprep.cli.errors import handle_errors
from shardprep.cli.state import debug
from shardprep.errors import ShardprepError
from shardprep.suggest import unknown

if TYPE_CHECKING:  # the library is imported inside the command: `prep --help` stays fast
    from rich.text import Text

    from shardprep.formats.catalog import FormatDoc


def _fields(fields: dict[str, str]) -> str:
    return ", ".join(k + (f" (row field {v})" if v != k else "") for k, v in fields.items()) or "-"


def _text(d: FormatDoc) -> Text:
    from rich.text import Text

    from shardprep.formats.catalog import columns_example

    # Text, not markup: examples hold brackets ("[{...}]") that rich would read as tags.
    t = Text()
    t.append(d.name, style="bold cyan")
    t.append(f"  (tasks {', '.join(d.tasks)})\n", style="dim")
    t.append(f"  {d.summary}\n")
    for label, value in (
        ("required", _fields(d.required)),
        ("optional", _fields(d.optional)),
        ("example", json.dumps(d.example, ensure_ascii=False)),
        ("mapping", columns_example(d)),
        *((("note", d.note),) if d.note else ()),
    ):
        t.append(f"  {label:<10}", style="dim")
        t.append(f"{value}\n")
    return t


@handle_errors(debug)
def formats(
    name: str = typer.Argument(None, help="One format (default: every format)."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """List the source formats: the fields each reads, an example row, and what `columns:` maps.

    Example: prep formats sharegpt
    """
    from shardprep.formats.catalog import CATALOG

    if name is not None and name not in CATALOG:
        raise ShardprepError(unknown("format", name, CATALOG))
    docs = [CATALOG[name]] if name else list(CATALOG.values())
    if as_json:
        rows = [
            {
                "name": d.name,
                "tasks": list(d.tasks),
                "summary": d.summary,
                "required": d.required,
                "optional": d.optional,
                "example": d.example,
                "note": d.note,
            }
            for d in docs
        ]
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False, soft_wrap=True)
    for d in docs:
        console.print(_text(d))
    console.print(
        Text(
            "columns: {FIELD: ROW_FIELD} reads the format's FIELD from another (dotted) row field",
            style="dim",
        )
    )

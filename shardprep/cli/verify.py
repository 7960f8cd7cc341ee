"""`prep verify DIR`."""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.markup import escape

from shardprep.cli.errors import handle_errors
from shardprep.cli.state import debug


@handle_errors(debug)
def verify(
    path: str = typer.Argument(
        ..., help="Build folder (local path or fsspec URL) holding manifest.json."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Re-hash every shard against the manifest; check schemas and row counts. Exit 1 when anything is wrong.

    Example: prep verify shards/demo-qwen3
    """
    from shardprep.views.verify import verify_build

    report = verify_build(path)
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        con = Console()
        for s in report.shards:
            if not s.ok:
                con.print(
                    f"[red]BAD[/] {escape(f'{s.path} ({s.split}): ' + '; '.join(s.problems))}"
                )
        verdict = "[green]ok[/]" if report.ok else "[red]FAILED[/]"
        bad = sum(not s.ok for s in report.shards)
        con.print(
            f"{verdict}: {len(report.shards)} shards checked, {bad} with problems ({escape(path)})"
        )
    if not report.ok:
        sys.exit(1)

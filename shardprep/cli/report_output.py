"""How `prep show` and `prep preview` hand a report to the user: HTML file, JSON, or the terminal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from shardprep.errors import ShardprepError


def emit_report(report: Any, *, as_json: bool, html: Path | None) -> None:
    from shardprep.report.data import to_json
    from shardprep.report.html import write_html
    from shardprep.report.text import print_report

    if html is not None:
        try:
            write_html(report, html)
        except FileNotFoundError:
            # ENOENT is not among the OS errors the CLI maps (a missing file of ours is a bug):
            # here it can only be the folder the user named for the page.
            raise ShardprepError(
                f"cannot write {html}: the folder {html.parent} does not exist"
            ) from None
    if as_json:
        typer.echo(json.dumps(to_json(report), indent=2, ensure_ascii=False))
        return
    console = Console(highlight=False)
    print_report(console, report)
    if html is not None:
        console.print(f"wrote {html}", soft_wrap=True, markup=False)

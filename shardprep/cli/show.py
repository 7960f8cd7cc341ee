"""`prep show DIR`: a finished build at a glance (summary, tables, histogram, shards, rows, mask health)."""

from __future__ import annotations

from pathlib import Path

import typer

from shardprep.cli.errors import handle_errors
from shardprep.cli.state import debug
from shardprep.errors import ShardprepError


@handle_errors(debug)
def show(
    path: str = typer.Argument(
        ...,
        help="Build folder holding manifest.json: a local path or an fsspec URL (s3://, gs://, ...).",
    ),
    split: str = typer.Option("train", "--split", help="Split to take rows from."),
    row: list[int] = typer.Option(
        None, "--row", help="Row index to decode (repeatable). Default: row 0."
    ),
    sample: int = typer.Option(
        None, "--sample", help="Decode K rows drawn at random (with --seed)."
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seed for --sample: the same seed shows the same rows."
    ),
    tokenizer: str = typer.Option(
        None, "--tokenizer", help="Tokenizer to decode with (default: the build's)."
    ),
    check_rows: int = typer.Option(
        None,
        "--check-rows",
        help="Rows per split read for the mask health checks (0: all; default 50,000).",
    ),
    pack: list[int] = typer.Option(
        None,
        "--pack",
        help="Plan packing --split into packs of SEQ_LEN positions, as PackedLoader trains it "
        "(repeatable): packs, efficiency, rows over length.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON for scripts."),
    html: Path = typer.Option(
        None, "--html", help="Also write a self-contained HTML page of the report here."
    ),
) -> None:
    """Summarize a build: tables, length histogram, shards, decoded rows, mask health warnings.

    Decoded rows show trained tokens highlighted."""
    from shardprep.cli.report_output import emit_report
    from shardprep.views.show import DEFAULT_CHECK_ROWS, inspect_build

    if check_rows is None:
        check_rows = DEFAULT_CHECK_ROWS
    if row and sample is not None:
        raise ShardprepError("--row and --sample pick rows two ways: give one of them")
    report = inspect_build(
        path,
        split=split,
        rows=list(row) if row else None,
        sample=sample,
        seed=seed,
        tokenizer=tokenizer,
        check_rows=check_rows,
        pack=list(pack) if pack else None,
    )
    emit_report(report, as_json=as_json, html=html)

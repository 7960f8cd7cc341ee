"""`prep show DIR`."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from shardprep.cli.errors import handle_errors
from shardprep.cli.state import debug
from shardprep.pipeline.inspect import (
    decode_spans,
    load_build_tokenizer,
    open_build,
    read_row,
    summary,
    weight_stats,
)


def _row_text(spans: list) -> Text:
    text = Text()
    for s in spans:
        style = "bold green" if s.trained else "dim"
        if s.special:
            style += " reverse"
        text.append(s.text, style=style)
    return text


@handle_errors(debug)
def show(
    path: str = typer.Argument(..., help="Build folder (local path or fsspec URL) holding manifest.json."),
    split: str = typer.Option("train", "--split", help="Split to take the example row from."),
    row: int = typer.Option(0, "--row", help="Index of the row to decode."),
    tokenizer: str = typer.Option(None, "--tokenizer", help="Tokenizer to decode with (default: the build's)."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON for scripts."),
) -> None:
    """Summarize a build and decode one row, trained tokens highlighted.

    Example: prep show shards/demo --row 3
    """
    output, manifest = open_build(path)
    info = summary(manifest)
    ex = read_row(output, manifest, split, row) if manifest["splits"].get(split, {}).get("rows") else None
    tok = load_build_tokenizer(manifest, tokenizer)
    spans = decode_spans(tok, ex) if (ex is not None and tok is not None) else None
    if as_json:
        payload = dict(info)
        if ex is not None:
            payload["row"] = {
                "split": split,
                "index": row,
                "source": ex["source"],
                "source_row": ex["source_row"],
                "shard": ex["shard"],
                **weight_stats(ex),
                "input_ids": ex["input_ids"],
                "target_ids": ex["target_ids"],
                "weights": ex["weights"],
                "spans": [s.__dict__ for s in spans] if spans is not None else None,
            }
        typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return

    con = Console()
    con.print(
        f"[bold]{info['name']}[/]  task {info['task']}  renderer {info['renderer']}  train_on {info['train_on']}\n"
        f"tokenizer {info['tokenizer']}  fingerprint {info['fingerprint'][:16]}  created {info['created_at']}"
    )
    t = Table("split", "rows", "tokens", "trained tokens", "trained %", "shards", "bytes")
    for name, s in info["splits"].items():
        t.add_row(
            name, f"{s['rows']:,}", f"{s['tokens']:,}", f"{s['trained_tokens']:,}",
            f"{100 * s['trained_ratio']:.1f}", str(s["shards"]), f"{s['bytes']:,}",
        )
    con.print(t)
    st = Table("source", "rows read", "examples", "tokens", "trained tokens", "dropped")
    for s in info["sources"]:
        st.add_row(s["name"], f"{s['rows_read']:,}", f"{s['examples']:,}", f"{s['tokens']:,}", f"{s['trained_tokens']:,}", f"{s['dropped']:,}")
    con.print(st)
    dropped = ", ".join(f"{k} {v:,}" for k, v in info["dropped"].items()) or "none"
    con.print(f"rows read {info['rows_read']:,}; dropped: {dropped}; truncated {info['truncated']:,}")
    if info["skipped_sample"]:
        con.print(f"sample of skipped rows: {output.path(info['skipped_sample'])}")
    if ex is None:
        con.print(f"(split {split!r} has no rows)")
        return
    ws = weight_stats(ex)
    con.print(
        f"\n[bold]{split} row {row}[/] (source {ex['source']} row {ex['source_row']}, {ws['length']} tokens, "
        f"{ws['trained']} trained; [bold green]green[/] = trained, [reverse]reversed[/] = special token)"
    )
    if spans is None:
        con.print("(tokenizer not available: pass --tokenizer to decode)\n" + str(ex["input_ids"][:200]))
    else:
        con.print(_row_text(spans))

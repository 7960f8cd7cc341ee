"""Terminal view of a show/preview report (rich).

Without color (a pipe, NO_COLOR, a snapshot test) trained text is bracketed ⟦…⟧ and special
tokens ‹…›, so what is trained stays visible in plain text.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Column, Table
from rich.text import Text

from shardprep.report.data import (
    PACKING_HEAD,
    SPLIT_HEAD,
    number,
    packing_cells,
    packing_title,
    reasons,
    source_cells,
    split_cells,
)
from shardprep.sizes import human_bytes

TRAINED_OPEN, TRAINED_CLOSE = "⟦", "⟧"
SPECIAL_OPEN, SPECIAL_CLOSE = "‹", "›"
_BAR_WIDTH = 40
_BLOCKS = " ▏▎▍▌▋▊▉█"


def _add_row(table: Table, *cells: str) -> None:
    # Cells are data, not rich markup: a source named "[x]" must print as "[x]".
    table.add_row(*(Text(c) for c in cells))


def header(report: dict[str, Any]) -> Text:
    kind = "preview (nothing written)" if report["kind"] == "preview" else "build"
    t = Text()
    # A build whose manifest lacks provenance (hand-written, older) shows "-" for what is unknown.
    t.append(f"{report['name'] or '-'}", style="bold")
    t.append(f"  {kind}\n")
    opts = report.get("renderer_options") or {}
    renderer = (report["renderer"] or "-") + (f" {opts}" if opts else "")
    lines = [
        ("tokenizer", report["tokenizer"] or "-"),
        (
            "renderer",
            f"{renderer}   train_on {report['train_on'] or '-'}   max_length {report.get('max_length') or '-'}",
        ),
        ("fingerprint", report["fingerprint"]),
    ]
    if report.get("created_at"):
        lines.append(("created", report["created_at"]))
    if report.get("stored"):
        stored = report["stored"]
        where = f"{report['path']}: " if report.get("path") else ""
        lines.append(
            ("stored", f"{where}{stored['shards']} shards, {human_bytes(stored['bytes'])}")
        )
    for key, value in lines:
        t.append(f"  {key:<12}", style="dim")
        t.append(f"{value}\n")
    return t


def split_table(report: dict[str, Any]) -> Table:
    t = Table(*SPLIT_HEAD, title="splits", title_justify="left")
    for cells in split_cells(report):
        _add_row(t, *cells)
    return t


def source_table(report: dict[str, Any]) -> Table:
    title = "sources (first rows only)" if report["kind"] == "preview" else "sources"
    t = Table(
        Column("source", no_wrap=True),
        "format",
        "rows",
        "examples",
        "tokens",
        "trained",
        "trained %",
        "dropped",
        "truncated",
        title=title,
        title_justify="left",
    )
    for cells in source_cells(report):
        _add_row(t, *cells)
    return t


def _where(sample: dict[str, Any]) -> str:
    # A JSONL/CSV line differs from the row (1-based, blank lines); an element or row equals it.
    line = sample.get("line")
    if line is not None and sample.get("unit", "line") == "line":
        return f"row {sample['row']} (line {line})"
    of = sample.get("duplicate_of")
    if of:  # dedup: which row it copies (held-out rows are kept first)
        return f"row {sample['row']} (= {of['source']} {of['split']} row {of['row']})"
    if sample.get("eval_file"):  # decontaminate: the eval file it shares an n-gram with
        return f"row {sample['row']} (~ {str(sample['eval_file']).rpartition('/')[2]})"
    return f"row {sample['row']}"


def drop_samples_text(report: dict[str, Any]) -> Text | None:
    """Per source and drop reason, the rows kept as a sample: where to look (None: no drops)."""
    lines = [
        (s["name"], reason, samples)
        for s in report["sources"]
        for reason, samples in (s.get("drop_samples") or {}).items()
        if samples
    ]
    if not lines:
        return None
    t = Text("dropped rows, a sample per source and reason\n", style="bold")
    for name, reason, samples in lines:
        t.append(f"  {name}  {reason}: ", style="yellow")
        t.append(", ".join(_where(x) for x in samples))
        files = dict.fromkeys(str(x.get("file") or "").rpartition("/")[2] for x in samples)
        t.append(f" in {', '.join(f for f in files if f)}" if any(files) else "")
        message = samples[0].get("message")
        if message:
            t.append(f"  {message if len(message) <= 160 else message[:160] + '…'}", style="dim")
        t.append("\n")
    return t


def decontamination_text(report: dict[str, Any]) -> Text | None:
    """Per eval file of `decontaminate`: the rows dropped for sharing an n-gram with it."""
    files = report.get("decontamination")
    if not files:
        return None
    t = Text("decontamination (rows sharing an n-gram with an eval file)\n", style="bold")
    for ev in files:
        t.append(f"  {ev['path'].rpartition('/')[2]}: {ev['rows']:,} rows", style="yellow")
        t.append(f" ({ev['ngrams']:,} n-grams)")
        if ev["samples"]:
            shown = ", ".join(f"{x['source']} {x['split']} row {x['row']}" for x in ev["samples"])
            t.append(f"  e.g. {shown}", style="dim")
        t.append("\n")
    return t


def totals_line(report: dict[str, Any]) -> Text:
    # The task's derived figures (per_turn: examples per conversation, token multiplier).
    extra = "".join(
        f"; {k.replace('_', ' ')} {v}" for k, v in (report.get("task_summary") or {}).items()
    )
    return Text(
        f"rows read {report['rows_read']:,}; dropped: {reasons(report['dropped']) or 'none'}; "
        f"truncated {report['truncated']:,}{extra}"
    )


def special_tokens_text(report: dict[str, Any]) -> Text | None:
    """Rows whose message text spells control tokens: the build's line, then one per source."""
    from shardprep.encode.special import special_tokens_line

    line = special_tokens_line(report.get("special_tokens"))
    if line is None:
        return None
    t = Text("control tokens in message text\n", style="bold")
    t.append(f"  {line}\n")
    for s in report["sources"]:
        rec = s.get("special_tokens") or {}
        if rec.get("rows"):
            tokens = ", ".join(f"{k} {v:,}" for k, v in rec.get("tokens", {}).items())
            t.append(f"  {s['name']}: {rec['rows']:,} rows ({tokens})\n")
    return t


def _bar(count: int, top: int) -> str:
    eighths = round(_BAR_WIDTH * 8 * count / top) if top else 0
    full, rest = divmod(eighths, 8)
    return ("█" * full + (_BLOCKS[rest] if rest else "")).ljust(_BAR_WIDTH)


def histogram(hist: dict[str, list[int]]) -> Text:
    """Power-of-two buckets (lo, hi] as horizontal bars; empty buckets before the first row are left out."""
    t = Text("example length (tokens)\n", style="bold")
    edges, counts = hist.get("edges", []), hist.get("counts", [])
    if not counts or not any(counts):
        t.append("  (no examples)\n")
        return t
    first = next(i for i, c in enumerate(counts) if c)
    top = max(counts)
    for i in range(first, len(counts)):
        lo = edges[i - 1] + 1 if i > 0 else 1
        label = f"{lo:,}–{edges[i]:,}" if lo != edges[i] else f"{lo:,}"
        t.append(f"  {label:>13} ")
        t.append(_bar(counts[i], top), style="cyan")
        t.append(f" {counts[i]:,}\n")
    return t


def shard_table(report: dict[str, Any]) -> Table:
    # Shards share their data folder; naming it once in the title keeps the file column narrow.
    folders = sorted({s["path"].rpartition("/")[0] for s in report["shards"]})
    title = Text(f"shards (in {folders[0]}/)" if len(folders) == 1 and folders[0] else "shards")
    t = Table(
        "split",
        Column("shard", no_wrap=True),
        "rows",
        "tokens",
        "trained tokens",
        "bytes",
        "sha256",
        title=title,
        title_justify="left",
    )
    for s in report["shards"]:
        name = s["path"].rpartition("/")[2] if len(folders) == 1 else s["path"]
        _add_row(
            t,
            s["split"],
            name,
            number(s["rows"]),
            number(s["tokens"]),
            number(s["trained_tokens"]),
            number(s["bytes"]),
            s["sha256"][:12],
        )
    return t


def row_text(row: dict[str, Any], *, plain: bool) -> Text:
    t = Text()
    if row["spans"] is None:
        t.append(
            f"(tokenizer not available: pass --tokenizer to decode)\ninput_ids {row['input_ids'][:200]}"
        )
        return t
    in_trained = False
    for s in row["spans"]:
        if plain and s["trained"] != in_trained:
            t.append(TRAINED_OPEN if s["trained"] else TRAINED_CLOSE)
            in_trained = s["trained"]
        style = "green" if s["trained"] else "dim"
        if s["special"]:
            style = "bold reverse " + ("green" if s["trained"] else "magenta")
            t.append(
                f"{SPECIAL_OPEN}{s['text']}{SPECIAL_CLOSE}" if plain else s["text"], style=style
            )
        else:
            t.append(s["text"], style=style)
    if plain and in_trained:
        t.append(TRAINED_CLOSE)
    return t


def pair_table(row: dict[str, Any], *, plain: bool) -> Table:
    """A preference pair: chosen and rejected side by side (each with its own trained marks)."""
    sides = row["pair"]
    t = Table(
        *(
            Column(
                f"{side} · {sides[side]['length']:,} tokens, {sides[side]['trained']:,} trained",
                ratio=1,
            )
            for side in ("chosen", "rejected")
        ),
        expand=True,
        show_lines=False,
    )
    t.add_row(row_text(sides["chosen"], plain=plain), row_text(sides["rejected"], plain=plain))
    return t


def block_text(row: dict[str, Any], *, plain: bool) -> Text:
    """A pretraining block, one document after another, each boundary marked with its offset."""
    t = Text()
    for doc in row["documents"]:
        t.append(
            f"── document {doc['document']} · offset {doc['offset']:,} · {doc['tokens']:,} tokens ──\n",
            style="bold cyan",
        )
        if doc["spans"] is None:
            continue
        t.append_text(row_text({"spans": doc["spans"]}, plain=plain))
        t.append("\n")
    if row["spans"] is None:
        t.append_text(row_text(row, plain=plain))
    return t


def prompt_text(row: dict[str, Any], *, plain: bool) -> Text:
    """An RL prompt, then its passthrough columns."""
    t = row_text(row, plain=plain)
    for key, value in row["prompt"].items():
        shown = value if isinstance(value, str) else repr(value)
        t.append(f"\n{key}: ", style="bold")
        t.append(shown if len(shown) <= 200 else shown[:200] + "…")
    return t


def _row_body(row: dict[str, Any], *, plain: bool) -> RenderableType:
    if "prompt" in row:
        return prompt_text(row, plain=plain)
    if "pair" in row:
        return pair_table(row, plain=plain)
    if "documents" in row:
        return block_text(row, plain=plain)
    return row_text(row, plain=plain)


def row_heading(row: dict[str, Any]) -> Text:
    where = (
        f"{row['split']} row {row['index']}"
        if row["split"] != "preview"
        else f"preview {row['index']}"
    )
    # per_turn rows say which message of their row they train.
    turn = f" message {row['message_index']}" if row.get("message_index") is not None else ""
    return Text(
        f"{where} · source {row['source']} row {row['source_row']}{turn} · {row['length']:,} "
        f"tokens, {row['trained']:,} trained",
        style="bold",
    )


def legend(plain: bool) -> Text:
    if plain:
        return Text(
            f"{TRAINED_OPEN}trained{TRAINED_CLOSE}, {SPECIAL_OPEN}special token{SPECIAL_CLOSE}",
            style="dim",
        )
    t = Text()
    t.append("trained", style="green")
    t.append(", ")
    t.append("not trained", style="dim")
    t.append(", ")
    t.append("special token", style="bold reverse magenta")
    return t


def health_text(report: dict[str, Any]) -> Text:
    h = report["health"]
    t = Text("mask health\n", style="bold")
    scope = (
        f"{h['rows_checked']:,} of {h['rows_total']:,} rows checked"
        if h["rows_checked"] < h["rows_total"]
        else f"{h['rows_checked']:,} rows checked"
    )
    t.append(f"  {scope}; rows training nothing: {h['untrained_rows']:,}\n")
    for e in h["end_of_turn"]:
        t.append(
            f"  end-of-turn {e['token']} (id {e['id']}): {e['in_targets']:,} in targets, {e['trained']:,} trained\n"
        )
    if not h["end_of_turn"]:
        t.append("  end-of-turn tokens: none known for this renderer/tokenizer\n")
    return t


def conformance_text(conf: dict[str, Any]) -> Text:
    t = Text("template conformance\n", style="bold")
    t.append(
        f"  {conf.get('identical', 0):,} of {conf.get('checked', 0):,} rows identical to the "
        f"chat template {conf.get('template')!r}\n"
    )
    first = conf.get("first_difference")
    if first:
        t.append(f"  first difference: row {first.get('index')}\n")
        diff = first.get("diff") or ""
        for line in diff if isinstance(diff, list) else str(diff).splitlines():
            style = (
                "red"
                if line.startswith("-")
                else "green"
                if line.startswith("+")
                else "dim"
                if line.startswith("@@")
                else ""
            )
            t.append(f"    {line}\n", style=style)
    return t


def warnings_text(report: dict[str, Any]) -> RenderableType:
    ws = report["warnings"]
    if not ws:
        return Text("no warnings", style="green")
    # A grid keeps wrapped lines of a long warning indented under its text, not under the "!".
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold yellow", no_wrap=True)
    grid.add_column()
    for w in ws:
        grid.add_row(Text("  !"), Text(f"{w['message']} [{w['code']}]"))
    return Group(Text(f"{len(ws)} warning(s)", style="bold yellow"), grid)


def row_errors_text(errors: list[dict[str, Any]]) -> Text:
    t = Text("rows that would be dropped\n", style="bold")
    for e in errors:
        # A row that could not be read or converted has no source row; its message names file and line.
        row = f" row {e['source_row']}" if e["source_row"] is not None else ""
        t.append(f"  {e['source']}{row}: {e['reason']}", style="yellow")
        t.append(f"  {e['message']}\n", style="dim")
    return t


def packing_table(packing: dict[str, Any] | list[dict[str, Any]]) -> Table:
    """`prep show --pack`: the plan PackedLoader trains, one row per seq_len."""
    t = Table(title=packing_title(packing))
    for col in PACKING_HEAD:
        t.add_column(col, justify="right")
    for cells in packing_cells(packing):
        _add_row(t, *cells)
    return t


def renderables(report: dict[str, Any], *, plain: bool) -> list[RenderableType]:
    out: list[RenderableType] = [header(report)]
    if report["splits"]:
        out.append(split_table(report))
    out += [
        source_table(report),
        totals_line(report),
        *([special] if (special := special_tokens_text(report)) is not None else []),
        *([samples] if (samples := drop_samples_text(report)) is not None else []),
        *([evals] if (evals := decontamination_text(report)) is not None else []),
        Text(""),
        histogram(report["length_histogram"]),
    ]
    if report["shards"]:
        out.append(shard_table(report))
    if report.get("packing"):
        out.append(packing_table(report["packing"]))
    if report.get("row_errors"):
        out.append(row_errors_text(report["row_errors"]))
    for row in report["rows"]:
        out += [Group(row_heading(row), legend(plain)), _row_body(row, plain=plain), Text("")]
    if not report["rows"]:
        out.append(Text("(no rows to show)\n"))
    if report.get("conformance"):
        out.append(conformance_text(report["conformance"]))
    out += [health_text(report), warnings_text(report)]
    return out


def print_fitted(console: Console, renderable: RenderableType) -> None:
    """Print; a table printed to a pipe or a log (no terminal width to respect) gets the width
    its cells need, so no cell is cut to "…" at the 80 columns rich assumes there."""
    if not isinstance(renderable, Table) or renderable.expand or console.is_terminal:
        console.print(renderable)
        return
    from rich.measure import Measurement

    wide = console.options.update_width(1 << 16)
    needed = Measurement.get(console, wide, renderable).maximum
    if needed <= console.width:
        console.print(renderable)
        return
    width = console.width  # print(width=) can only narrow: widen the console for this table
    console.width = needed
    try:
        console.print(renderable)
    finally:
        console.width = width


def print_report(console: Console, report: dict[str, Any]) -> None:
    # No color system: a pipe, NO_COLOR or a test. Then the text itself must carry the markings.
    plain = console.color_system is None
    for r in renderables(report, plain=plain):
        print_fitted(console, r)
    if report.get("skipped_sample") and report.get("path"):
        console.print(
            f"sample of skipped rows: {report['path'].rstrip('/')}/{report['skipped_sample']}",
            soft_wrap=True,
            markup=False,
        )

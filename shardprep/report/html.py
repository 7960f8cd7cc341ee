"""A self-contained HTML page of a show/preview report: inline CSS, an inline SVG histogram, no scripts
or external files, so it can be mailed or attached to an issue as one file."""

from __future__ import annotations

import re
from html import escape
from pathlib import Path
from typing import Any

from shardprep.encode.decode import Piece
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
from shardprep.store.storage import naming_errors

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #1d1d1f; max-width: 1200px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
table { border-collapse: collapse; margin: 6px 0; }
th, td { border: 1px solid #d0d0d7; padding: 3px 8px; text-align: right; }
th { background: #f2f2f6; } td.l, th:first-child { text-align: left; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 2px 14px; margin: 8px 0; }
dl.meta dt { color: #6e6e73; } dl.meta dd { margin: 0; font-family: ui-monospace, monospace; }
.warn { background: #fff4d6; border-left: 4px solid #e0a000; padding: 6px 10px; margin: 4px 0; }
.ok { color: #1a7f37; }
.row { white-space: pre-wrap; word-break: break-word; font: 13px/1.6 ui-monospace, monospace;
       border: 1px solid #d0d0d7; padding: 10px; border-radius: 6px; background: #fafafa; }
.t { border-radius: 2px; } .t.a { background: #ececf1; } .t.b { background: #e0e0e8; }
.t.tr.a { background: #c9f0d2; } .t.tr.b { background: #a9e4b8; }
.t.sp { outline: 1px solid #8250df; color: #8250df; font-weight: 600; }
.t.tr.sp { color: #116329; outline-color: #116329; }
.legend span { padding: 0 6px; margin-right: 8px; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; }
.pair h4 { margin: 4px 0; font-size: 14px; } .pair .chosen h4 { color: #1a7f37; } .pair .rejected h4 { color: #b31d28; }
pre.diff { background: #f6f8fa; padding: 8px; white-space: pre-wrap; overflow-wrap: anywhere; }
.del { color: #b31d28; background: #ffeef0; } .add { color: #22863a; background: #f0fff4; }
svg text { font: 11px system-ui, sans-serif; fill: #444; }
"""


_NUMBER = re.compile(r"^[\d,.%-]+$")


def _td(cell: str) -> str:
    # Numbers align right (the stylesheet's default), text left.
    return (
        f"<td>{escape(cell)}</td>" if _NUMBER.match(cell) else f'<td class="l">{escape(cell)}</td>'
    )


def _table(cls: str, head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(_td(c) for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def histogram_svg(hist: dict[str, list[int]], *, width: int = 640, height: int = 200) -> str:
    """Vertical bars, one per power-of-two bucket from the first non-empty one; labels are the bucket's upper edge."""
    edges, counts = hist.get("edges", []), hist.get("counts", [])
    if not counts or not any(counts):
        return "<p>(no examples)</p>"
    first = next(i for i, c in enumerate(counts) if c)
    edges, counts = edges[first:], counts[first:]
    top = max(counts)
    pad_bottom, pad_top = 30, 18
    plot_h = height - pad_bottom - pad_top
    slot = width / len(counts)
    parts = [
        f'<svg class="histogram" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" role="img" aria-label="example length histogram">'
    ]
    for i, (edge, count) in enumerate(zip(edges, counts, strict=True)):
        h = plot_h * count / top
        x = i * slot + slot * 0.1
        y = pad_top + plot_h - h
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.8:.1f}" height="{h:.1f}" '
            f'fill="#4f8fe6" data-edge="{edge}" data-count="{count}">'
            f"<title>≤{edge:,} tokens: {count:,} rows</title></rect>"
        )
        cx = i * slot + slot / 2
        parts.append(f'<text x="{cx:.1f}" y="{y - 4:.1f}" text-anchor="middle">{count:,}</text>')
        parts.append(f'<text x="{cx:.1f}" y="{height - 12}" text-anchor="middle">≤{edge:,}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _pieces_html(pieces: list[Piece]) -> str:
    out = []
    for i, p in enumerate(pieces):
        cls = (
            "t "
            + ("a" if i % 2 == 0 else "b")
            + (" tr" if p.trained else "")
            + (" sp" if p.special else "")
        )
        title = f"{'trained' if p.trained else 'not trained'}; id {' '.join(map(str, p.ids))}"
        out.append(
            f'<span class="{cls}" data-n="{len(p.ids)}" data-trained="{p.n_trained}" '
            f'title="{escape(title)}">{escape(p.text)}</span>'
        )
    return "".join(out)


def _spans_html(spans: list[dict[str, Any]]) -> str:
    """Runs of equal trained-ness (what a nested row carries: its per-token pieces are not kept)."""
    out = []
    for i, s in enumerate(spans):
        cls = (
            "t "
            + ("a" if i % 2 == 0 else "b")
            + (" tr" if s["trained"] else "")
            + (" sp" if s["special"] else "")
        )
        title = f"{s['n_trained']:,} of {s['n_tokens']:,} tokens trained"
        out.append(
            f'<span class="{cls}" data-n="{s["n_tokens"]}" data-trained="{s["n_trained"]}" '
            f'title="{escape(title)}">{escape(s["text"])}</span>'
        )
    return "".join(out)


def _side_html(side: str, sub: dict[str, Any]) -> str:
    """One side of a preference pair, labelled like the terminal's column header."""
    head = f"{side} · {sub['length']:,} tokens, {sub['trained']:,} trained"
    if sub.get("spans") is None:
        body = escape(f"(tokenizer not available) input_ids {sub['input_ids'][:200]}")
    else:
        body = _spans_html(sub["spans"])
    return (
        f'<section class="example {side}" data-side="{side}" data-trained="{sub["trained"]}" '
        f'data-length="{sub["length"]}">'
        f'<h4>{escape(head)}</h4><div class="row">{body}</div></section>'
    )


def _row_html(row: dict[str, Any]) -> str:
    where = (
        f"{row['split']} row {row['index']}"
        if row["split"] != "preview"
        else f"preview {row['index']}"
    )
    if "pair" in row:
        # Both sides, chosen first, each with its own trained marks (the top-level row is the chosen side).
        head = f"{where} · source {row['source']} row {row['source_row']} · preference pair"
        sides = "".join(_side_html(side, row["pair"][side]) for side in ("chosen", "rejected"))
        return f'<div class="pair-row"><h3>{escape(head)}</h3><div class="pair">{sides}</div></div>'
    turn = f" message {row['message_index']}" if row.get("message_index") is not None else ""
    head = (
        f"{where} · source {row['source']} row {row['source_row']}{turn} · {row['length']:,} "
        f"tokens, {row['trained']:,} trained"
    )
    if row.get("pieces") is None:
        body = escape(f"(tokenizer not available) input_ids {row['input_ids'][:200]}")
    else:
        body = _pieces_html(row["pieces"])
    return (
        f'<section class="example" data-trained="{row["trained"]}" data-length="{row["length"]}">'
        f'<h3>{escape(head)}</h3><div class="row">{body}</div></section>'
    )


def _diff_html(diff: Any) -> str:
    lines = diff if isinstance(diff, list) else str(diff or "").splitlines()
    out = []
    for line in lines:
        cls = "del" if line.startswith("-") else "add" if line.startswith("+") else ""
        out.append(f'<span class="{cls}">{escape(line)}</span>' if cls else escape(line))
    return '<pre class="diff">' + "\n".join(out) + "</pre>"


def render_html(report: dict[str, Any]) -> str:
    kind = "preview (nothing written)" if report["kind"] == "preview" else "build"
    meta = [
        ("tokenizer", report["tokenizer"]),
        ("renderer", f"{report['renderer']} {report.get('renderer_options') or ''}".strip()),
        ("train_on", report["train_on"]),
        ("max_length", str(report.get("max_length") or "-")),
        ("fingerprint", report["fingerprint"]),
    ]
    if report.get("created_at"):
        meta.append(("created", report["created_at"]))
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{escape(str(report["name"]))} · shardprep</title>',
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{escape(str(report['name']))}</h1><p>{escape(kind)}</p>",
        '<dl class="meta">'
        + "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in meta)
        + "</dl>",
        "<h2>Warnings</h2>",
    ]
    if report["warnings"]:
        parts += [
            f'<div class="warn" data-code="{escape(w["code"])}">{escape(w["message"])}</div>'
            for w in report["warnings"]
        ]
    else:
        parts.append('<p class="ok">no warnings</p>')
    if report["splits"]:
        parts.append("<h2>Splits</h2>")
        parts.append(_table("splits", SPLIT_HEAD, split_cells(report)))
    parts.append("<h2>Sources</h2>")
    head = ["source", "format", "rows read", "examples", "tokens", "trained tokens", "trained %"]
    parts.append(_table("sources", [*head, "dropped", "truncated"], source_cells(report)))
    dropped = reasons(report["dropped"]) or "none"
    parts.append(
        f"<p>rows read {report['rows_read']:,}; dropped: {escape(dropped)}; truncated {report['truncated']:,}</p>"
    )
    parts += ["<h2>Example length (tokens)</h2>", histogram_svg(report["length_histogram"])]
    if report["shards"]:
        parts.append("<h2>Shards</h2>")
        parts.append(
            _table(
                "shards",
                ["split", "shard", "rows", "tokens", "trained tokens", "bytes", "sha256"],
                [
                    [
                        s["split"],
                        s["path"],
                        number(s["rows"]),
                        number(s["tokens"]),
                        number(s["trained_tokens"]),
                        number(s["bytes"]),
                        s["sha256"][:12],
                    ]
                    for s in report["shards"]
                ],
            )
        )
    if report.get("packing"):
        parts.append(f"<h2>{escape(packing_title(report['packing']))}</h2>")
        parts.append(_table("packing", PACKING_HEAD, packing_cells(report["packing"])))
    h = report["health"]
    parts.append("<h2>Mask health</h2>")
    parts.append(
        _table(
            "health",
            ["check", "value"],
            [
                ["rows checked", f"{h['rows_checked']:,} of {h['rows_total']:,}"],
                ["rows training nothing", number(h["untrained_rows"])],
            ]
            + [
                [
                    f"{e['token']} (id {e['id']}) trained / in targets",
                    f"{e['trained']:,} / {e['in_targets']:,}",
                ]
                for e in h["end_of_turn"]
            ],
        )
    )
    conf = report.get("conformance")
    if conf:
        parts.append("<h2>Template conformance</h2>")
        parts.append(
            f"<p>{conf.get('identical', 0):,} of {conf.get('checked', 0):,} rows identical to "
            f"{escape(str(conf.get('template')))}</p>"
        )
        first = conf.get("first_difference")
        if first:
            parts.append(
                f"<p>first difference: row {escape(str(first.get('index')))}</p>"
                + _diff_html(first.get("diff"))
            )
    if report.get("row_errors"):
        parts.append("<h2>Rows that would be dropped</h2>")
        parts.append(
            _table(
                "row-errors",
                ["source", "row", "reason", "message"],
                [
                    [
                        e["source"],
                        "-" if e["source_row"] is None else str(e["source_row"]),
                        e["reason"],
                        e["message"],
                    ]
                    for e in report["row_errors"]
                ],
            )
        )
    parts.append("<h2>Rows</h2>")
    parts.append(
        '<p class="legend"><span class="t a">not trained</span><span class="t tr a">trained</span>'
        '<span class="t sp">special token</span> (shading alternates per token; hover for ids)</p>'
    )
    parts += [_row_html(r) for r in report["rows"]]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_html(report: dict[str, Any], path: str | Path) -> None:
    with naming_errors(str(path)):
        Path(path).write_text(render_html(report), encoding="utf-8")

"""What the report's views share: the JSON `--json` prints, the table cells the terminal and
the HTML page print, and how numbers and sizes are written."""

from __future__ import annotations

from typing import Any


def to_json(report: dict[str, Any]) -> dict[str, Any]:
    """Drop the per-token pieces (HTML only; the spans carry the same text)."""
    out = dict(report)
    out["rows"] = [{k: v for k, v in r.items() if k != "pieces"} for r in report.get("rows", [])]
    if len(out["rows"]) == 1:
        out["row"] = out["rows"][0]  # scripts written against 0.1 read a single `row`
    return out


SPLIT_HEAD = [
    "split",
    "rows",
    "tokens",
    "trained tokens",
    "trained %",
    "at max_length",
    "shards",
    "bytes",
]


def number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def percent(trained: int, tokens: int) -> str:
    return f"{100 * trained / tokens:.1f}" if tokens else "-"


def reasons(counts: dict[str, int] | None) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counts.items()) if counts else ""


def split_cells(report: dict[str, Any]) -> list[list[str]]:
    """One row of cells per split, under SPLIT_HEAD (terminal and HTML print the same)."""
    return [
        [
            name,
            number(s["rows"]),
            number(s["tokens"]),
            number(s["trained_tokens"]),
            percent(s["trained_tokens"], s["tokens"]),
            number(s.get("at_max_length")),
            number(s["shards"]),
            number(s["bytes"]),
        ]
        for name, s in report["splits"].items()
    ]


def source_cells(report: dict[str, Any]) -> list[list[str]]:
    """One row of cells per source: name, format, rows read, examples, tokens, trained tokens,
    trained %, dropped (with its reasons), truncated (terminal and HTML print the same)."""
    return [
        [
            s["name"],
            s.get("format") or "-",
            number(s["rows_read"]),
            number(s["examples"]),
            number(s["tokens"]),
            number(s["trained_tokens"]),
            percent(s["trained_tokens"], s["tokens"]),
            number(s["dropped"])
            + (f" ({reasons(s['dropped_by_reason'])})" if s.get("dropped_by_reason") else ""),
            number(s.get("truncated")),
        ]
        for s in report["sources"]
    ]


PACKING_HEAD = [
    "seq_len",
    "packs",
    "bound",
    "efficiency",
    "over length",
    "cut positions",
    "bias",
    "trained away",
]


def packing_cells(packing: dict[str, Any] | list[dict[str, Any]]) -> list[list[str]]:
    """`prep show --pack`, one row of cells per seq_len (terminal and HTML print the same)."""
    plans = packing if isinstance(packing, list) else [packing]
    return [
        [
            f"{p['seq_len']:,}",
            f"{p['packs']:,}",
            f"{p['packs_lower_bound']:,}",
            f"{100 * p['efficiency']:.2f}%",
            f"{p['rows_over_length']:,}",
            f"{p['positions_truncated']:,}",
            f"{p['position_bias']:+.3f}",
            f"{p.get('rows_trained_away', 0):,}",
        ]
        for p in plans
    ]


def packing_title(packing: dict[str, Any] | list[dict[str, Any]]) -> str:
    first = packing[0] if isinstance(packing, list) else packing
    return f"packing {first['split']} (best-fit decreasing; packs shuffled per epoch)"

"""The report as JSON: what `--json` prints."""

from __future__ import annotations

from typing import Any


def to_json(report: dict[str, Any]) -> dict[str, Any]:
    """Drop the per-token pieces (HTML only; the spans carry the same text)."""
    out = dict(report)
    out["rows"] = [{k: v for k, v in r.items() if k != "pieces"} for r in report.get("rows", [])]
    if len(out["rows"]) == 1:
        out["row"] = out["rows"][0]  # scripts written against 0.1 read a single `row`
    return out


PACKING_HEAD = ["seq_len", "packs", "bound", "efficiency", "over length", "cut positions", "bias"]


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
        ]
        for p in plans
    ]


def packing_title(packing: dict[str, Any] | list[dict[str, Any]]) -> str:
    first = packing[0] if isinstance(packing, list) else packing
    return f"packing {first['split']} (best-fit decreasing; packs shuffled per epoch)"
